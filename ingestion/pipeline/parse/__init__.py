"""Parse an uploaded file into ordered, typed blocks of text.

Pure step: no ORM, no network. The real file type is sniffed from the bytes (the extension only
tells Markdown from plain text), text is decoded with a detected encoding, and one module per
family of formats reads the content:

    sniff.py     file type from the bytes; decoding of unknown encodings
    pdf.py       PDF text layers page by page, OCR for scans (ocr.py: tesseract;
                 ocr_tables.py: tables in page images, via img2table)
    office.py    DOCX, PPTX, XLSX
    markup.py    HTML (cleaned, hidden text kept apart), Markdown, plain text
    mail.py      EML and MSG, attachments returned for child documents
    archive.py   zip bombs and decompression bombs, refused before anything is inflated
    elements.py  shared helpers over unstructured, tables as Markdown rows

Every failure the document itself causes becomes a `ParseError` with a short reason a person
can read: "encrypted", "no extractable text", "corrupt PDF: ...", "unsupported file type: ...".
"""

from __future__ import annotations

import re
from pathlib import Path

from ingestion.pipeline.parse import archive, mail, markup, ocr, office, pdf
from ingestion.pipeline.parse.elements import configure_unstructured, html_table_to_markdown
from ingestion.pipeline.parse.sniff import decode_text, detect_content_type
from ingestion.pipeline.parse.types import (
    DOCX,
    EML,
    HTML,
    IMAGE_TYPES,
    MARKDOWN,
    MSG,
    PDF,
    PPTX,
    SUPPORTED_CONTENT_TYPES,
    TEXT,
    XLSX,
    Attachment,
    Block,
    ParsedDocument,
    ParseError,
    ParseLimits,
    Progress,
    one_line,
)

__all__ = [
    "DOCX",
    "EML",
    "HTML",
    "IMAGE_TYPES",
    "MARKDOWN",
    "MSG",
    "PDF",
    "PPTX",
    "SUPPORTED_CONTENT_TYPES",
    "TEXT",
    "XLSX",
    "Attachment",
    "Block",
    "ParseError",
    "ParseLimits",
    "ParsedDocument",
    "decode_text",
    "detect_content_type",
    "html_table_to_markdown",
    "parse_file",
]


def parse_file(
    path: Path,
    *,
    filename: str,
    on_progress: Progress | None = None,
    ocr_languages: str = "eng",
    limits: ParseLimits | None = None,
) -> ParsedDocument:
    """Parse the file at `path`; `filename` is the uploaded name (used for the title and suffix).

    `on_progress(done, total)` is called as pages, slides or sheets are read.
    Raises `ParseError` for unsupported, encrypted, corrupt or empty files, and refuses
    (``"refused: ..."``) archives and images that would expand past `limits`.
    """
    limits = limits or ParseLimits()
    content_type = detect_content_type(path, filename=filename)
    if content_type in (DOCX, PPTX, XLSX):  # every Office Open XML file is a ZIP container
        archive.archive_check(path, limits)
    configure_unstructured()
    attachments: list[Attachment] = []
    pages = ocr_pages = 0
    if content_type == PDF:
        meta_title, blocks, pages, ocr_pages = pdf.parse_pdf(
            path, on_progress=on_progress, ocr_languages=ocr_languages, limits=limits
        )
    elif content_type in IMAGE_TYPES:
        blocks = _image_blocks(path, ocr_languages, limits)
        meta_title, pages, ocr_pages = "", 1, 1
    elif content_type == DOCX:
        meta_title, blocks = office.parse_docx(path)
    elif content_type == PPTX:
        meta_title, blocks, pages = office.parse_pptx(path, on_progress=on_progress)
    elif content_type == XLSX:
        meta_title, blocks, pages = office.parse_xlsx(path, on_progress=on_progress)
    elif content_type == EML:
        meta_title, blocks, attachments = mail.parse_eml(path)
    elif content_type == MSG:
        meta_title, blocks, attachments = mail.parse_msg(path)
    else:
        text = decode_text(path.read_bytes())
        if not text.strip():
            raise ParseError("no extractable text")
        meta_title, blocks = _text_blocks(text, content_type)
    blocks = [_clean(block) for block in blocks]
    blocks = [block for block in blocks if block.text.strip()]
    if not blocks and not attachments:
        raise ParseError("no extractable text")
    title = _CONTROL.sub("", meta_title) or next((b.text for b in blocks if b.kind == "title"), "")
    return ParsedDocument(
        title=one_line(title) or Path(filename).stem,
        content_type=content_type,
        blocks=blocks,
        attachments=attachments,
        pages=pages,
        ocr_pages=ocr_pages,
    )


# NUL and other C0 controls (bar tab and newlines) come out of some PDFs and Office files;
# PostgreSQL text cannot hold NUL, and none of them carries meaning.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(block: Block) -> Block:
    text, heading = _CONTROL.sub("", block.text), _CONTROL.sub("", block.heading)
    if text == block.text and heading == block.heading:
        return block
    return Block(text, block.page, heading, block.kind, block.hidden)


def _text_blocks(text: str, content_type: str) -> tuple[str, list[Block]]:
    if content_type == HTML:
        return markup.html_title(text), markup.html_blocks(text)
    if content_type == MARKDOWN:
        return "", markup.markdown_blocks(text)
    return "", markup.text_to_blocks(text)


def _image_blocks(path: Path, ocr_languages: str, limits: ParseLimits) -> list[Block]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only: the size is declared, not decoded
            archive.image_check(*image.size, limits)
            image.load()
            return ocr.ocr_page(image, languages=ocr_languages, page=1).blocks
    except Image.DecompressionBombError:  # PIL's own ceiling, should ours be set higher
        raise ParseError(
            "refused: the image declares too many pixels (decompression bomb?)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        # PIL's messages carry the server-side path: say it plainly instead.
        raise ParseError("corrupt image: the image data cannot be decoded") from None
