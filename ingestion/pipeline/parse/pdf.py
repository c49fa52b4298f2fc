"""PDF: the text layer read page by page with pdfium; OCR where a page has no usable text layer.

Short PDFs also go through unstructured's "fast" strategy, whose title guesses give sections;
long ones are read with pdfium alone (about 90x faster, so the embedder stays the bottleneck).
Pages are handled one at a time, so memory does not grow with the page count.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ingestion.pipeline.parse import ocr
from ingestion.pipeline.parse.archive import image_check
from ingestion.pipeline.parse.elements import (
    configure_unstructured,
    elements_to_blocks,
    run_partitioner,
    settle_pdf_titles,
)
from ingestion.pipeline.parse.types import Block, ParseError, ParseLimits, Progress, short

logger = logging.getLogger(__name__)

# Up to this many pages the slower, structure-aware unstructured pass runs too.
RICH_MAX_PAGES = 30
# A page whose images cover this share of it is a scan; its text layer (if any) came from OCR.
_SCAN_IMAGE_SHARE = 0.6
_MIN_PAGE_CHARS = 20
# Above this quality a scan's own text layer is trusted; below it the page is OCRed again.
_TRUSTED_SCAN_QUALITY = 0.95
OCR_DPI = 200
_MAX_SINGLE_LETTER_SHARE = 0.4


def parse_pdf(
    path: Path, *, on_progress: Progress | None, ocr_languages: str, limits: ParseLimits
) -> tuple[str, list[Block], int, int]:
    """Return (metadata title, blocks, pages, pages read with OCR)."""
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise ParseError("encrypted") from None
        raise ParseError(f"corrupt PDF: {short(exc)}") from None
    try:
        title = str(pdf.get_metadata_dict().get("Title", "")).strip()
        total = len(pdf)
        page_blocks: list[list[Block]] = []
        from_ocr: set[int] = set()
        for number in range(1, total + 1):
            blocks, used_ocr = _page_blocks(pdf, number, ocr_languages, limits)
            page_blocks.append(blocks)
            if used_ocr:
                from_ocr.add(number)
            if on_progress:
                on_progress(number, total)
    except pypdfium2.PdfiumError as exc:
        raise ParseError(f"corrupt PDF: {short(exc)}") from None
    finally:
        pdf.close()
    if total <= RICH_MAX_PAGES and len(from_ocr) < total:
        page_blocks = _with_unstructured_structure(path, page_blocks, from_ocr)
    return title, [block for blocks in page_blocks for block in blocks], total, len(from_ocr)


def _page_blocks(
    pdf: Any, number: int, ocr_languages: str, limits: ParseLimits
) -> tuple[list[Block], bool]:
    page = pdf[number - 1]
    try:
        textpage = page.get_textpage()
        text = textpage.get_text_range()
        textpage.close()
        lines = (line.strip() for line in text.splitlines())
        text = "\n".join(line for line in lines if line)
        usable = len(text) >= _MIN_PAGE_CHARS
        image_share = _image_share(page)
        needs_ocr = (not usable and image_share > 0) or (
            image_share >= _SCAN_IMAGE_SHARE
            and ocr.text_quality(text) < _TRUSTED_SCAN_QUALITY
            and ocr.tesseract_available()
        )
        if needs_ocr:
            # A page may declare any size: check the bitmap before pdfium allocates it.
            width, height = (round(side * OCR_DPI / 72) for side in page.get_size())
            image_check(width, height, limits, what=f"page {number} rendered for OCR")
            bitmap = page.render(scale=OCR_DPI / 72)
            recognised = ocr.ocr_page(bitmap.to_pil(), languages=ocr_languages, page=number)
            bitmap.close()
            if not usable or ocr.text_quality(recognised.text) > ocr.text_quality(text):
                return recognised.blocks, True
        if not text:
            return [], False
        return [Block(text=text, page=number, heading="", kind="text")], False
    finally:
        page.close()


def _image_share(page: Any) -> float:
    """Share of the page area covered by images (0 when it has none)."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    area = 0.0
    for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2):
        left, bottom, right, top = obj.get_bounds()
        area += max(0.0, right - left) * max(0.0, top - bottom)
    return min(1.0, area / (width * height)) if width and height else 0.0


def _with_unstructured_structure(
    path: Path, page_blocks: list[list[Block]], from_ocr: set[int]
) -> list[list[Block]]:
    """Replace pdfium's page text by unstructured's titled elements where it found any."""
    from unstructured.partition.pdf import partition_pdf

    configure_unstructured()
    try:
        # languages=["eng"] is unstructured's own default; passing it only silences a warning.
        elements = run_partitioner(
            "PDF", partition_pdf, filename=str(path), strategy="fast", languages=["eng"]
        )
    except ParseError as exc:
        # pdfium read the file; a stricter parser failing on it is not the document's fault.
        logger.info("unstructured could not read a PDF pdfium read", extra={"error": exc.reason})
        return page_blocks
    by_page: dict[int, list[Block]] = {}
    for block in settle_pdf_titles(elements_to_blocks(elements, with_pages=True)):
        if block.page is not None:
            by_page.setdefault(block.page, []).append(block)
    return [
        by_page[number] if _better_than_pdfium(by_page.get(number), number, from_ocr) else blocks
        for number, blocks in enumerate(page_blocks, start=1)
    ]


def _better_than_pdfium(blocks: list[Block] | None, number: int, from_ocr: set[int]) -> bool:
    """unstructured's page is used unless it is empty, OCRed, or letter-spaced ("R o t a e d":
    pdfminer on rotated pages), where pdfium's plain text reads better."""
    if not blocks or number in from_ocr:
        return False
    tokens = " ".join(block.text for block in blocks).split()
    return sum(1 for token in tokens if len(token) == 1) <= _MAX_SINGLE_LETTER_SHARE * len(tokens)
