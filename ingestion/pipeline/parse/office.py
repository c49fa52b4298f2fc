"""Office Open XML: DOCX (python-docx), PPTX (python-pptx) and XLSX (openpyxl).

Read directly rather than through unstructured: these walkers are an order of magnitude faster
on long files (an 872-page handbook parses in seconds) and keep tables as Markdown rows.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingestion.pipeline.parse.elements import cell_text, rows_to_markdown
from ingestion.pipeline.parse.types import Block, ParseError, Progress, one_line, short

logger = logging.getLogger(__name__)

HEADER_FOOTER_HEADING = "Page headers and footers"


def _open(label: str, loader: Any, path: Path) -> Any:
    try:
        return loader(str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ParseError(f"corrupt {label}: {short(exc)}") from None
    except Exception as exc:  # third-party parsers raise any type on a bad file
        logger.info("office parse failed", extra={"format": label, "error": repr(exc)[:300]})
        raise ParseError(f"corrupt {label}: {short(exc)}") from None


# -- DOCX -------------------------------------------------------------------------------------


def parse_docx(path: Path) -> tuple[str, list[Block]]:
    """Body paragraphs and tables in order, headings from paragraph styles, then the page
    headers and footers (once each, not per page)."""
    import docx

    document = _open("DOCX", docx.Document, path)
    blocks: list[Block] = []
    heading = ""
    for item in document.iter_inner_content():
        if hasattr(item, "rows"):
            table = _docx_table_markdown(item)
            if table:
                blocks.append(Block(table, None, heading, "table"))
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        if style.startswith("Heading") or style == "Title":
            heading = one_line(text)[:500]
            blocks.append(Block(heading, None, heading, "title"))
        elif "List" in style:
            blocks.append(Block(f"- {text}", None, heading, "text"))
        else:
            blocks.append(Block(text, None, heading, "text"))
    blocks.extend(_docx_headers_and_footers(document))
    return (document.core_properties.title or "").strip(), blocks


def _docx_table_markdown(table: Any) -> str:
    """Rows read from the XML cells themselves: python-docx's cell grid raises on tables whose
    merged cells shift the grid. A vertically merged cell repeats its text in every row it
    spans; a horizontal span pads with blanks, as for HTML tables."""
    from docx.table import _Cell

    grid: list[list[str]] = []
    above: dict[int, str] = {}
    for tr in table._tbl.tr_lst:
        offset = tr.grid_before
        row = [""] * offset
        column = offset
        for tc in tr.tc_lst:
            if tc.vMerge == "continue":
                text = above.get(column, "")
            else:
                text = cell_text(_docx_cell_text(_Cell(tc, table)))
            above[column] = text
            row.append(text)
            row.extend([""] * (tc.grid_span - 1))
            column += tc.grid_span
        grid.append(row)
    return rows_to_markdown(grid)


def _docx_cell_text(cell: Any) -> str:
    parts = [p.text for p in cell.paragraphs]
    for nested in cell.tables:  # a nested table is flattened into its cell's text
        parts.extend(" ".join(_docx_cell_text(c) for c in row.cells) for row in nested.rows)
    return " ".join(parts)


def _docx_headers_and_footers(document: Any) -> list[Block]:
    seen: set[str] = set()
    blocks: list[Block] = []
    for section in document.sections:
        for part in (
            section.header,
            section.first_page_header,
            section.even_page_header,
            section.footer,
            section.first_page_footer,
            section.even_page_footer,
        ):
            if part.is_linked_to_previous:
                continue
            for item in part.iter_inner_content():
                is_table = hasattr(item, "rows")
                text = _docx_table_markdown(item) if is_table else item.text.strip()
                if text and text not in seen:
                    seen.add(text)
                    kind = "table" if is_table else "text"
                    blocks.append(Block(text, None, HEADER_FOOTER_HEADING, kind))
    return blocks


# -- PPTX -------------------------------------------------------------------------------------


def parse_pptx(path: Path, *, on_progress: Progress | None) -> tuple[str, list[Block], int]:
    """One section per slide (its title), shapes in document order, group shapes entered."""
    from pptx import Presentation

    presentation = _open("PPTX", Presentation, path)
    slides = list(presentation.slides)
    blocks: list[Block] = []
    for number, slide in enumerate(slides, start=1):
        title = _slide_title(slide) or f"Slide {number}"
        blocks.append(Block(title, number, title, "title"))
        for shape in _shapes(slide.shapes):
            if shape == getattr(slide.shapes, "title", None):
                continue
            blocks.extend(_shape_blocks(shape, number, title))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                blocks.append(Block(f"Notes: {notes.text.strip()}", number, title, "text"))
        if on_progress:
            on_progress(number, len(slides))
    title = (presentation.core_properties.title or "").strip()
    return title, blocks, len(slides)


def _slide_title(slide: Any) -> str:
    try:
        shape = slide.shapes.title
    except (KeyError, ValueError):  # a malformed placeholder
        return ""
    return one_line(shape.text_frame.text) if shape is not None and shape.has_text_frame else ""


def _shapes(shapes: Any) -> Iterator[Any]:
    for shape in shapes:
        if getattr(shape, "shape_type", None) == 6:  # MSO_SHAPE_TYPE.GROUP
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _shape_blocks(shape: Any, page: int, heading: str) -> list[Block]:
    if getattr(shape, "has_table", False) and shape.has_table:
        grid = [[cell_text(cell.text) for cell in row.cells] for row in shape.table.rows]
        table = rows_to_markdown(grid)
        return [Block(table, page, heading, "table")] if table else []
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        text = "\n".join(p.text.strip() for p in shape.text_frame.paragraphs if p.text.strip())
        return [Block(text, page, heading, "text")] if text else []
    return []


# -- XLSX -------------------------------------------------------------------------------------


def parse_xlsx(path: Path, *, on_progress: Progress | None) -> tuple[str, list[Block], int]:
    """One section per sheet; blank rows split a sheet into separate tables."""
    import openpyxl

    workbook = _open(
        "XLSX", lambda p: openpyxl.load_workbook(p, read_only=True, data_only=True), path
    )
    try:
        sheets = workbook.worksheets
        blocks: list[Block] = []
        for number, sheet in enumerate(sheets, start=1):
            heading = f"Sheet: {sheet.title}"
            blocks.append(Block(heading, number, heading, "title"))
            for table in _sheet_tables(sheet):
                blocks.append(Block(table, number, heading, "table"))
            if on_progress:
                on_progress(number, len(sheets))
        title = (workbook.properties.title or "").strip()
    finally:
        workbook.close()
    return title, blocks, len(sheets)


def _sheet_tables(sheet: Any) -> Iterator[str]:
    rows: list[list[str]] = []
    for values in sheet.iter_rows(values_only=True):
        cells = [cell_text(_cell_value(v)) for v in values]
        if any(cells):
            rows.append(cells)
        elif rows:
            yield from _table_parts(rows)
            rows = []
    if rows:
        yield from _table_parts(rows)


def _table_parts(rows: list[list[str]]) -> Iterator[str]:
    """Drop columns empty in every row (sub-tables side by side leave gaps), then render."""
    width = max(len(row) for row in rows)
    padded = [row + [""] * (width - len(row)) for row in rows]
    keep = [c for c in range(width) if any(row[c] for row in padded)]
    table = rows_to_markdown([[row[c] for c in keep] for row in padded])
    if table:
        yield table


def _cell_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
