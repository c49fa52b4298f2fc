"""OCR with Debian's `tesseract-ocr`, run as a subprocess (one page image at a time)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from typing import Any

from ingestion.pipeline.parse.types import Block, ParseError, one_line

OCR_UNAVAILABLE = "OCR unavailable (install tesseract-ocr)"
_PAGE_TIMEOUT_S = 120
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Share of whitespace-separated tokens that must look like words (or numbers) for a text layer
# to count as usable; OCR garbage such as "«POAH «3E*»CM" scores far below it.
_GOOD_TOKEN = re.compile(r"^[\"'(\[«“‘]*(?:[^\W_]+(?:[-'’./,:][^\W_]+)*)[\"')\]»”’.,;:!?%*]*$")
MIN_TEXT_QUALITY = 0.75
MIN_TOKENS_TO_JUDGE = 15


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def ocr_image(image: Any, *, languages: str) -> str:
    """Text of a PIL image. Raises `ParseError` when tesseract is missing or fails."""
    if not tesseract_available():
        raise ParseError(OCR_UNAVAILABLE)
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", languages, "--psm", "3"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=_PAGE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ParseError(f"OCR took longer than {_PAGE_TIMEOUT_S} s on one page") from None
    if done.returncode != 0:
        detail = one_line(done.stderr.decode("utf-8", "replace"))[:120]
        raise ParseError(f"OCR failed: {detail or 'tesseract error'}", permanent=False)
    return done.stdout.decode("utf-8", "replace")


def ocr_blocks(text: str, *, page: int | None) -> list[Block]:
    """OCR output as paragraph blocks (tesseract separates paragraphs with a blank line)."""
    paragraphs = (one_line(part) for part in _PARAGRAPH_BREAK.split(text))
    return [Block(text=p, page=page, heading="", kind="text") for p in paragraphs if p]


def text_quality(text: str) -> float:
    """Share of tokens that look like words or numbers; 1.0 when there is too little to judge."""
    tokens = text.split()
    if len(tokens) < MIN_TOKENS_TO_JUDGE:
        return 1.0
    return sum(1 for token in tokens if _GOOD_TOKEN.match(token)) / len(tokens)
