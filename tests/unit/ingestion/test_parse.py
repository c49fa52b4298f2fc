"""Parsing: real file type from the bytes, decoding, headings, pages, tables and clean failures."""

from __future__ import annotations

import os
import socket
import zipfile
from pathlib import Path

import pytest

from ingestion.pipeline.parse import (
    DOCX,
    HTML,
    MARKDOWN,
    PDF,
    TEXT,
    Block,
    ParsedDocument,
    ParseError,
    html_table_to_markdown,
    parse_file,
)
from ingestion.pipeline.parse.ocr import tesseract_available

REPO = Path(__file__).resolve().parents[3]
SAMPLE_KB = REPO / "sample_kb"
FIXTURES = REPO / "tests" / "fixtures" / "ingestion"
SHARED_DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
MESSY_DOCS = SHARED_DATA / "messy-docs"
needs_messy_docs = pytest.mark.skipif(
    not MESSY_DOCS.is_dir(), reason=f"shared test documents not found at {MESSY_DOCS}"
)


def parse(path: Path) -> ParsedDocument:
    return parse_file(path, filename=path.name)


def block_containing(document: ParsedDocument, text: str) -> Block:
    return next(block for block in document.blocks if text in block.text)


def parse_error(path: Path) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(path)
    return caught.value


# -- The sample knowledge base ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type", "title"),
    [
        ("account-and-security.md", MARKDOWN, "Account and security"),
        ("billing-and-plans.html", HTML, "Billing and plans | Nimbus Notes Help Center"),
        ("exporting-notes.pdf", PDF, "Exporting notes"),
        ("offline-and-sync.md", MARKDOWN, "Offline mode and sync"),
    ],
)
def test_each_sample_article_parses_with_its_type_and_title(name, content_type, title):
    document = parse(SAMPLE_KB / name)

    assert document.content_type == content_type
    assert document.title == title
    assert all(block.text.strip() for block in document.blocks)
    assert {block.kind for block in document.blocks} <= {"text", "table", "title"}


def test_markdown_blocks_carry_the_heading_of_their_section():
    document = parse(SAMPLE_KB / "account-and-security.md")

    reset = block_containing(document, "Password reset links expire after 30 minutes.")
    codes = block_containing(document, "10 one-time recovery codes")
    totp = block_containing(document, "time-based one-time passwords")

    assert (reset.heading, reset.kind, reset.page) == ("Resetting your password", "text", None)
    assert codes.heading == "Recovery codes"
    assert totp.heading == "Two-factor authentication"


def test_markdown_titles_are_blocks_of_kind_title_that_head_themselves():
    document = parse(SAMPLE_KB / "offline-and-sync.md")

    titles = [block for block in document.blocks if block.kind == "title"]

    assert titles[0].text == "Offline mode and sync"
    assert all(block.heading == block.text for block in titles)
    reconnect = block_containing(document, "within 60 seconds of reconnecting")
    assert reconnect.heading == "Reconnecting"


def test_html_plans_table_becomes_one_table_block_of_markdown_rows():
    document = parse(SAMPLE_KB / "billing-and-plans.html")

    table = next(block for block in document.blocks if block.kind == "table")
    lines = table.text.splitlines()

    assert table.heading == "Comparing plans"
    assert lines[0] == "| Plan | Price | Notes | Storage | Sharing |"
    assert lines[1] == "| --- | --- | --- | --- | --- |"
    assert "| Pro | $8 per user per month | Unlimited |" in table.text
    assert "| Team | $15 per user per month |" in table.text
    assert "| Free | $0 | Up to 100 notes |" in table.text


def test_html_text_after_a_heading_is_in_that_section():
    document = parse(SAMPLE_KB / "billing-and-plans.html")

    refunds = block_containing(document, "Refunds are available within 14 days of purchase.")

    assert refunds.heading == "Refunds"


def test_pdf_blocks_carry_their_page_number_and_heading():
    document = parse(SAMPLE_KB / "exporting-notes.pdf")

    formats = block_containing(document, "Notes can be exported as PDF, Markdown or HTML.")
    large = block_containing(document, "more than 500 notes")

    assert (formats.page, formats.heading) == (2, "Export formats")
    assert large.page == 2 and "ZIP" in large.text
    assert block_containing(document, "three-dot menu").page == 1
    assert {block.page for block in document.blocks} == {1, 2}


def test_pdf_lines_of_one_sentence_are_joined_into_one_block():
    document = parse(SAMPLE_KB / "exporting-notes.pdf")

    large = block_containing(document, "e-mailed to you as a ZIP file")

    assert "Exports of up to 500 notes" in large.text


# -- Sniffing the real type -------------------------------------------------------------------


def test_text_file_named_pdf_is_parsed_as_plain_text():
    document = parse(FIXTURES / "text-named.pdf")

    assert document.content_type == TEXT
    assert "It must be parsed as text." in " ".join(block.text for block in document.blocks)
    assert document.title == "text-named"


def test_png_named_txt_is_read_as_an_image_and_a_blank_one_has_no_text():
    assert parse_error(FIXTURES / "png-named.txt").reason == "no extractable text"


def test_html_named_txt_is_parsed_as_html(tmp_path):
    path = tmp_path / "page.txt"
    path.write_text("<!DOCTYPE html><html><body><h1>Plans</h1><p>Pro is $8.</p></body></html>")

    document = parse(path)

    assert document.content_type == HTML
    assert block_containing(document, "Pro is $8.").heading == "Plans"


def test_zip_that_is_not_a_word_document_is_unsupported(tmp_path):
    path = tmp_path / "notes.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")

    assert parse_error(path).reason == "unsupported file type: application/zip"


def test_docx_headings_and_tables_become_blocks(tmp_path):
    import docx

    word = docx.Document()
    word.add_heading("Plans", level=1)
    word.add_paragraph("Two plans are sold.")
    table = word.add_table(rows=3, cols=2)
    for row, (plan, price) in enumerate([("Plan", "Price"), ("Pro", "$8"), ("Team", "$15")]):
        table.cell(row, 0).text, table.cell(row, 1).text = plan, price
    path = tmp_path / "plans.bin"  # the extension must not matter
    word.save(str(path))

    document = parse(path)
    table_block = next(block for block in document.blocks if block.kind == "table")

    assert document.content_type == DOCX
    assert document.title == "Plans"
    assert block_containing(document, "Two plans are sold.").heading == "Plans"
    assert table_block.text.splitlines() == [
        "| Plan | Price |",
        "| --- | --- |",
        "| Pro | $8 |",
        "| Team | $15 |",
    ]


# -- Decoding ---------------------------------------------------------------------------------


def test_cp1252_text_is_decoded_as_windows_1252():
    text = " ".join(block.text for block in parse(FIXTURES / "cp1252.txt").blocks)

    assert "café crème costs 5 €" in text
    assert "“Nimbus”" in text
    assert "naïve résumé" in text


def test_utf16_text_with_a_byte_order_mark_is_decoded():
    text = " ".join(block.text for block in parse(FIXTURES / "utf16-bom.txt").blocks)

    assert "Grüße aus München" in text
    assert "Ärger, Öl, Übermut." in text


def test_utf16_text_without_a_byte_order_mark_is_decoded(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes("This is a note about offline sync and exports.\n".encode("utf-16-be"))

    text = " ".join(block.text for block in parse(path).blocks)

    assert text == "This is a note about offline sync and exports."


# -- Failures ---------------------------------------------------------------------------------


def test_empty_file_fails_with_no_extractable_text():
    assert parse_error(FIXTURES / "empty.txt").reason == "no extractable text"


def test_whitespace_only_file_fails_with_no_extractable_text(tmp_path):
    path = tmp_path / "blank.md"
    path.write_text(" \n\t\n   \n")

    assert parse_error(path).reason == "no extractable text"


def test_truncated_pdf_fails_with_a_short_corrupt_pdf_reason():
    error = parse_error(FIXTURES / "truncated.pdf")

    assert error.reason.startswith("corrupt PDF: ")
    assert len(error.reason) < 150 and "\n" not in error.reason
    assert error.permanent


@needs_messy_docs
def test_encrypted_pdf_fails_with_reason_encrypted():
    error = parse_error(MESSY_DOCS / "password.pdf")

    assert error.reason == "encrypted"
    assert error.permanent


@needs_messy_docs
@pytest.mark.skipif(not tesseract_available(), reason="tesseract-ocr is not installed")
def test_scanned_pdf_without_a_text_layer_is_read_with_ocr():
    document = parse(MESSY_DOCS / "loremipsum-flat.pdf")

    assert document.ocr_pages == 1
    assert "Lorem ipsum dolor sit amet" in document.blocks[0].text


@needs_messy_docs
def test_scanned_pdf_without_tesseract_fails_with_ocr_unavailable(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)

    assert parse_error(MESSY_DOCS / "loremipsum-flat.pdf").reason == (
        "OCR unavailable (install tesseract-ocr)"
    )


@needs_messy_docs
def test_pdf_with_only_an_owner_password_is_read():
    document = parse(MESSY_DOCS / "copy-protected.pdf")

    assert document.content_type == PDF
    assert any("LayoutParser" in block.text for block in document.blocks)


@needs_messy_docs
def test_pdf_that_unstructured_judges_too_complex_is_read_with_pdfium():
    document = parse(MESSY_DOCS / "failure-after-repair.pdf")

    assert len({block.page for block in document.blocks}) > 70
    assert any("breast cancer" in block.text for block in document.blocks)


# -- Offline ----------------------------------------------------------------------------------


def test_partitioning_loads_the_packaged_spacy_model_without_the_network(monkeypatch, tmp_path):
    import unstructured.nlp.tokenize as tokenize

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args[:2])
        raise OSError("network disabled in this test")

    tokenize._get_nlp.cache_clear()  # force a fresh spaCy load inside the guard
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    path = tmp_path / "note.md"
    path.write_text("# Sync\n\nOffline changes are sent when the device reconnects.\n")

    document = parse(path)

    assert attempts == []
    assert Path(tokenize._SPACY_MODEL_NAME, "config.cfg").is_file()
    assert block_containing(document, "Offline changes").heading == "Sync"


# -- Tables -----------------------------------------------------------------------------------


def test_html_table_rows_repeat_a_row_spanning_cell_and_pad_column_spans():
    table = (
        "<table><tr><th>Plan</th><th>Seats</th><th>Price</th></tr>"
        '<tr><td rowspan="2">Team</td><td>1-20</td><td>$15</td></tr>'
        "<tr><td>21+</td><td>$13</td></tr>"
        '<tr><td colspan="2">Free</td><td>$0</td></tr></table>'
    )

    assert html_table_to_markdown(table).splitlines() == [
        "| Plan | Seats | Price |",
        "| --- | --- | --- |",
        "| Team | 1-20 | $15 |",
        "| Team | 21+ | $13 |",
        "| Free |  | $0 |",
    ]


def test_html_table_cells_escape_pipes_and_fold_whitespace():
    table = "<table><tr><td>a | b</td><td>two\n   lines</td></tr></table>"

    assert html_table_to_markdown(table).splitlines()[0] == "| a \\| b | two lines |"
