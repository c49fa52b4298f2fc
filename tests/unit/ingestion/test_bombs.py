"""Zip bombs and decompression bombs are refused before a parser inflates or decodes them."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ingestion.pipeline.parse import ParseError, ParseLimits, parse_file
from ingestion.pipeline.parse.archive import archive_check
from tests.support.bombs import (
    docx_bomb,
    docx_lying_about_size,
    docx_with_entries,
    png_declaring,
)

MB = 1024 * 1024
SMALL = ParseLimits(max_uncompressed_bytes=8 * MB, max_ratio=200, max_entries=50)


def refusal(path: Path, limits: ParseLimits = SMALL) -> str:
    with pytest.raises(ParseError) as caught:
        parse_file(path, filename=path.name, limits=limits)
    return caught.value.reason


def test_a_docx_that_expands_past_the_limit_is_refused_from_its_declared_sizes(tmp_path):
    bomb = docx_bomb(tmp_path / "bomb.docx", inflated_mb=20)
    assert bomb.stat().st_size < MB  # small on disk
    assert refusal(bomb) == "refused: archive expands beyond 8 MB (zip bomb?)"


def test_a_part_compressed_far_beyond_real_xml_is_refused_even_under_the_size_limit(tmp_path):
    bomb = docx_bomb(tmp_path / "dense.docx", inflated_mb=4)
    reason = refusal(bomb)
    assert reason.startswith("refused: archive entry expands ")
    assert reason.endswith("x, over the limit of 200x (zip bomb?)")


def test_an_archive_with_too_many_entries_is_refused(tmp_path):
    many = docx_with_entries(tmp_path / "many.docx", entries=51)
    assert refusal(many) == "refused: archive has 51 entries, over the limit of 50 (zip bomb?)"


def test_sizes_the_central_directory_understates_never_get_inflated_past_it(tmp_path):
    liar = docx_lying_about_size(tmp_path / "liar.docx", real_mb=20, declared_bytes=100_000)
    declared = sum(i.file_size for i in zipfile.ZipFile(liar).infolist())
    assert declared < SMALL.max_uncompressed_bytes  # the declared check alone would pass it
    reason = refusal(liar, ParseLimits(max_uncompressed_bytes=8 * MB, max_ratio=10_000))
    assert reason.startswith("corrupt archive: Bad CRC-32")


def test_the_streamed_pass_counts_what_entries_really_inflate_to(tmp_path):
    # Declared sizes pass (ratio unlimited, 6 MB declared); the real bytes counted in pieces
    # are then held to the same total.
    bomb = docx_bomb(tmp_path / "six.docx", inflated_mb=6)
    limits = ParseLimits(max_uncompressed_bytes=7 * MB, max_ratio=10_000)
    archive_check(bomb, limits)  # 6 MB fits
    with pytest.raises(ParseError, match="expands beyond 5 MB"):
        archive_check(bomb, ParseLimits(max_uncompressed_bytes=5 * MB, max_ratio=10_000))


def test_an_ordinary_docx_passes_the_checks_with_the_default_limits(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Refunds", level=1)
    document.add_paragraph("Refunds are issued within 14 days of the request.")
    document.save(tmp_path / "ok.docx")
    parsed = parse_file(tmp_path / "ok.docx", filename="ok.docx")
    assert any("14 days" in b.text for b in parsed.blocks)


def test_an_image_declaring_more_pixels_than_the_limit_is_refused_before_decoding(tmp_path):
    png = png_declaring(tmp_path / "wide.png", width=4000, height=3000)
    assert png.stat().st_size < 200
    reason = refusal(png, ParseLimits(max_image_pixels=10_000_000))
    assert reason == (
        "refused: image of 4000x3000 pixels is over the limit of 10 megapixels"
        " (decompression bomb?)"
    )


def test_the_default_limit_refuses_a_bomb_even_when_pils_own_ceiling_is_switched_off(
    tmp_path, monkeypatch
):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # some libraries do this globally
    png = png_declaring(tmp_path / "huge.png", width=30_000, height=30_000)
    assert refusal(png, ParseLimits()).startswith("refused: image of 30000x30000 pixels")
