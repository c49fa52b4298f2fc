"""OCR keeps ruled tables as Markdown tables: real tesseract, real img2table, images drawn here
and the two image-only tables of the shared messy-docs corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ingestion.pipeline.parse import Block, ParsedDocument, parse_file
from ingestion.pipeline.parse.ocr import tesseract_available

pytestmark = pytest.mark.skipif(not tesseract_available(), reason="tesseract-ocr is not installed")

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
MESSY_DOCS = SHARED_DATA / "messy-docs"
needs_messy_docs = pytest.mark.skipif(
    not MESSY_DOCS.is_dir(), reason=f"shared test documents not found at {MESSY_DOCS}"
)

ABOVE = "Quarterly sales per region are listed below."
BELOW = "All figures are in thousands of euros."
GRID = [
    ["Region", "Units", "Revenue"],
    ["North", "120", "4,500"],
    ["South", "75", "2,310"],
    ["East", "310", "9,870"],
]


def page_with_a_table(*, table: bool = True, line_width: int = 3) -> Image.Image:
    """A white page at about 200 dpi: a sentence, a ruled grid with a header row, a sentence."""
    font = ImageFont.load_default(size=34)
    page = Image.new("L", (1400, 1000), 255)
    draw = ImageDraw.Draw(page)
    draw.text((120, 100), ABOVE, font=font, fill=0)
    if table:
        left, top, width, height = 120, 220, 380, 80
        for row, cells in enumerate(GRID):
            for column, text in enumerate(cells):
                x, y = left + column * width, top + row * height
                draw.rectangle((x, y, x + width, y + height), outline=0, width=line_width)
                draw.text((x + 30, y + 20), text, font=font, fill=0)
        draw.text((120, top + len(GRID) * height + 100), BELOW, font=font, fill=0)
    else:
        draw.text((120, 260), BELOW, font=font, fill=0)
    return page


def markdown_rows(block: Block) -> list[list[str]]:
    """Cells of each Markdown row, the `---` rule left out."""
    rows = [line.strip().strip("|").split(" | ") for line in block.text.splitlines()]
    cells = [[cell.strip() for cell in row] for row in rows]
    return [row for row in cells if set(row) != {"---"}]


def only_table(document: ParsedDocument) -> list[list[str]]:
    tables = [block for block in document.blocks if block.kind == "table"]
    assert len(tables) == 1, [block.text for block in document.blocks]
    return markdown_rows(tables[0])


def row_starting(rows: list[list[str]], first: str) -> list[str]:
    return next(row for row in rows if row[0] == first)


def test_a_ruled_table_in_an_image_becomes_a_markdown_table_between_its_paragraphs(tmp_path):
    path = tmp_path / "sales.png"
    page_with_a_table().save(path)

    document = parse_file(path, filename=path.name)

    assert [block.kind for block in document.blocks] == ["text", "table", "text"]
    assert document.blocks[0].text == ABOVE
    assert document.blocks[2].text == BELOW
    assert only_table(document) == GRID
    assert document.blocks[1].text.splitlines()[:2] == [
        "| Region | Units | Revenue |",
        "| --- | --- | --- |",
    ]


def test_a_scanned_pdf_page_with_a_table_keeps_it_as_a_table_on_its_page(tmp_path):
    path = tmp_path / "scan.pdf"
    page_with_a_table().convert("RGB").save(path, resolution=200)  # an image-only PDF

    document = parse_file(path, filename=path.name)

    assert document.ocr_pages == 1
    rows = only_table(document)
    assert rows[0] == ["Region", "Units", "Revenue"]
    assert row_starting(rows, "South") == ["South", "75", "2,310"]
    assert all(block.page == 1 for block in document.blocks)


def test_a_large_page_is_searched_shrunk_and_thick_rules_are_not_read_as_text(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("ingestion.pipeline.parse.ocr_tables.MAX_DETECTION_PIXELS", 1_000_000)
    path = tmp_path / "sales.png"
    page_with_a_table(line_width=6).save(path)  # 1.4 megapixels

    document = parse_file(path, filename=path.name)

    assert only_table(document) == GRID


def test_a_page_without_a_table_still_gives_plain_paragraphs(tmp_path):
    path = tmp_path / "note.png"
    page_with_a_table(table=False).save(path)

    document = parse_file(path, filename=path.name)

    assert [block.kind for block in document.blocks] == ["text", "text"]
    assert [block.text for block in document.blocks] == [ABOVE, BELOW]


@needs_messy_docs
def test_the_image_only_single_table_keeps_headers_above_their_numbers():
    document = parse_file(MESSY_DOCS / "single_table.pdf", filename="single_table.pdf")

    rows = only_table(document)
    assert rows[0] == [
        "Processing",
        "total chunks",
        "mean chunks per document (std)",
        "tables mean (std)",
    ]
    # Base 128/256/512 share one ruled row in the image: split into rows by their white space.
    assert row_starting(rows, "Base 256") == ["Base 256", "32,051", "400.64 (242.04)", "N/A"]
    assert row_starting(rows, "Chipper") == [
        "Chipper",
        "20,843",
        "260.57 (145.80)",
        "96.20 (57.53)",
    ]
    assert len(rows) == 5


@needs_messy_docs
def test_the_table_with_merged_cells_repeats_row_spans_and_pads_column_spans():
    name = "table-multi-row-column-cells.pdf"
    document = parse_file(MESSY_DOCS / name, filename=name)

    rows = only_table(document)
    # "Results" spans two columns, the other headers two rows (the sub-header row).
    assert rows[0] == [
        "Disability Category",
        "Participants",
        "Ballots Completed",
        "Ballots Incomplete/ Terminated",
        "Results",
        "",
    ]
    assert rows[1][:4] == rows[0][:4]
    assert rows[1][4:] == ["Accuracy", "Time to complete"]
    mobility = row_starting(rows, "Mobility")
    assert mobility[rows[1].index("Time to complete")] == "1416 sec, n=3"
    assert row_starting(rows, "Dexterity") == [
        "Dexterity",
        "5",
        "4",
        "1",
        "98.3%, n=4",
        "1672.1 sec, n=4",
    ]


def test_without_opencv_contrib_a_page_is_ocred_as_before_with_no_table(tmp_path, monkeypatch):
    # pip can leave opencv-python's cv2 over opencv-contrib-python's, without what img2table needs.
    monkeypatch.setattr("ingestion.pipeline.parse.ocr_tables._opencv_has_contrib", lambda: False)
    path = tmp_path / "sales.png"
    page_with_a_table().save(path)

    document = parse_file(path, filename=path.name)

    assert {block.kind for block in document.blocks} == {"text"}
    assert document.blocks[0].text == ABOVE
    assert document.blocks[-1].text == BELOW
