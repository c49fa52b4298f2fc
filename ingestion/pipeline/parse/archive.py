"""Zip bombs and decompression bombs, refused before a parser inflates anything. Pure step.

DOCX, PPTX and XLSX are ZIP containers, and their parsers (python-docx, python-pptx, openpyxl)
read whole parts into memory: one part that inflates to gigabytes takes the worker down before
any stage time limit can act. So every Office file passes two checks first:

1. the central directory's declared sizes: the number of entries, the total uncompressed size,
   and each large entry's compression ratio (deflate on real XML reaches ~20x, a bomb ~1000x);
2. a streamed inflation of every entry in bounded pieces, counting the bytes really produced and
   checking each CRC, because the declared sizes are written by whoever made the file. Python's
   zipfile never inflates an entry past its declared size, which the parsers rely on too, so
   (1) bounds memory and (2) proves it before a parser loads a part whole.

Images are bombs of another kind: a few kilobytes of PNG can declare 100,000 x 100,000 pixels,
decoded into tens of gigabytes. ``image_check`` compares the declared size with a pixel limit
before anything is decoded (PIL reads only the header on open).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ingestion.pipeline.parse.types import ParseError, ParseLimits

_MB = 1024 * 1024
_PIECE = _MB  # bytes inflated per read: memory stays bounded whatever the entry holds
# Small entries may compress extremely well (an empty sheet, a run of spaces) and are harmless:
# the ratio is judged only on entries that inflate past this size.
RATIO_MIN_BYTES = _MB


def archive_check(path: Path, limits: ParseLimits) -> None:
    """Raise ``ParseError("refused: ...")`` when the ZIP at ``path`` is (or behaves like) a bomb."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            _check_declared(entries, limits)
            _check_inflation(archive, entries, limits)
    except zipfile.BadZipFile as exc:
        raise ParseError(f"corrupt archive: {exc}") from None


def _check_declared(entries: list[zipfile.ZipInfo], limits: ParseLimits) -> None:
    if len(entries) > limits.max_entries:
        raise ParseError(
            f"refused: archive has {len(entries)} entries, over the limit of {limits.max_entries}"
            " (zip bomb?)"
        )
    declared = sum(e.file_size for e in entries)
    if declared > limits.max_uncompressed_bytes:
        raise ParseError(_too_big(limits))
    for entry in entries:
        if entry.file_size >= RATIO_MIN_BYTES:
            _check_ratio(entry, entry.file_size, limits)


def _check_inflation(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], limits: ParseLimits
) -> None:
    total = 0
    for entry in entries:
        produced = 0
        try:
            with archive.open(entry) as part:
                while piece := part.read(_PIECE):
                    produced += len(piece)
                    total += len(piece)
                    if total > limits.max_uncompressed_bytes:
                        raise ParseError(_too_big(limits))
        except RuntimeError:  # zipfile's "password required" for an encrypted entry
            raise ParseError("encrypted") from None
        except (NotImplementedError, EOFError, OSError) as exc:  # unknown method, truncated data
            raise ParseError(f"corrupt archive: {exc}") from None
        if produced >= RATIO_MIN_BYTES:
            _check_ratio(entry, produced, limits)


def _check_ratio(entry: zipfile.ZipInfo, size: int, limits: ParseLimits) -> None:
    ratio = size / max(entry.compress_size, 1)
    if ratio > limits.max_ratio:
        raise ParseError(
            f"refused: archive entry expands {ratio:.0f}x, over the limit of"
            f" {limits.max_ratio:.0f}x (zip bomb?)"
        )


def _too_big(limits: ParseLimits) -> str:
    return (
        f"refused: archive expands beyond {limits.max_uncompressed_bytes / _MB:.0f} MB (zip bomb?)"
    )


def image_check(width: int, height: int, limits: ParseLimits, *, what: str = "image") -> None:
    """Raise ``ParseError("refused: ...")`` when an image (or a page to render) is too large."""
    if width * height > limits.max_image_pixels:
        raise ParseError(
            f"refused: {what} of {width}x{height} pixels is over the limit of"
            f" {limits.max_image_pixels / 1e6:.0f} megapixels (decompression bomb?)"
        )
