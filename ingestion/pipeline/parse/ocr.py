"""OCR with Debian's `tesseract-ocr`, run as a subprocess (one page image at a time).

A page image is read whole by tesseract while img2table looks for ruled tables in it
(ocr_tables.py); a table found becomes a Markdown table block, each of its cells read on its own,
and the words around it stay paragraphs in reading order. A page without a table comes out
exactly as tesseract's plain text, as it did before tables were recovered.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingestion.pipeline.parse import ocr_tables
from ingestion.pipeline.parse.types import Block, ParseError, one_line

OCR_UNAVAILABLE = "OCR unavailable (install tesseract-ocr)"
_PAGE_TIMEOUT_S = 120
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Share of whitespace-separated tokens that must look like words (or numbers) for a text layer
# to count as usable; OCR garbage such as "«POAH «3E*»CM" scores far below it.
_GOOD_TOKEN = re.compile(r"^[\"'(\[«“‘]*(?:[^\W_]+(?:[-'’./,:][^\W_]+)*)[\"')\]»”’.,;:!?%*]*$")
MIN_TEXT_QUALITY = 0.75
MIN_TOKENS_TO_JUDGE = 15


@dataclass(frozen=True)
class Word:
    """One word of tesseract's TSV output; `image` is the 1-based image of a list input."""

    image: int
    block: int
    paragraph: int
    left: int
    top: int
    right: int
    bottom: int
    text: str


@dataclass(frozen=True)
class PageText:
    """An OCRed page: tesseract's plain text (to judge its quality) and the page's blocks."""

    text: str
    blocks: list[Block]


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def ocr_page(image: Any, *, languages: str, page: int | None) -> PageText:
    """Text and blocks of a PIL page image. Raises `ParseError` when tesseract is missing or
    fails."""
    if not tesseract_available():
        raise ParseError(OCR_UNAVAILABLE)
    with tempfile.TemporaryDirectory(prefix="ragapp-ocr-") as name:
        folder = Path(name)
        gray = image.convert("L")
        gray.save(folder / "page.png")
        reading = _start_tesseract(
            [str(folder / "page.png"), str(folder / "page"), "-l", languages, "--psm", "3"]
        )
        try:
            tables = ocr_tables.find_tables(gray, folder / "page.png")  # while tesseract reads
        except BaseException:
            reading.kill()
            reading.communicate()
            raise
        _finish_tesseract(reading)
        text = _read(folder / "page.txt")
        found = _read_tables(tables, gray, languages=languages, folder=folder)
        if not found:
            return PageText(text, ocr_blocks(text, page=page))
        words = _read_around_tables(gray, found, languages=languages, folder=folder)
        return PageText(text, ocr_tables.page_blocks(found, words, page=page))


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


def read_tsv(path: Path) -> list[Word]:
    """The words (level 5 rows) of a tesseract TSV file, in tesseract's reading order."""
    words: list[Word] = []
    for line in _read(path).splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 12 or fields[0] != "5" or not fields[11].strip():
            continue
        image, block, paragraph = (int(value) for value in fields[1:4])
        left, top, width, height = (int(value) for value in fields[6:10])
        words.append(
            Word(image, block, paragraph, left, top, left + width, top + height, fields[11].strip())
        )
    return words


def _read_tables(
    tables: list[ocr_tables.FoundTable], gray: Any, *, languages: str, folder: Path
) -> list[tuple[ocr_tables.Box, str]]:
    """(box, Markdown) of each table that holds text; its cells read in one tesseract run over
    a list of cell images, each image thresholded on its own."""
    if not tables:
        return []
    boxes = [box for table in tables for box in ocr_tables.cell_boxes(table)]
    listed: list[str] = []
    for number, crop in enumerate(ocr_tables.cell_images(gray, boxes), start=1):
        crop.save(folder / f"cell-{number}.png")
        listed.append(str(folder / f"cell-{number}.png"))
    (folder / "cells.txt").write_text("\n".join(listed) + "\n", encoding="utf-8")
    out = folder / "cells"
    # --psm 6: a cell is one block of text, perhaps on several lines.
    arguments = [str(folder / "cells.txt"), str(out), "-l", languages, "--psm", "6", "tsv"]
    _finish_tesseract(_start_tesseract(arguments))
    words: dict[int, list[Word]] = {}
    for word in read_tsv(out.with_suffix(".tsv")):
        words.setdefault(word.image, []).append(word)
    texts = {box: ocr_tables.words_text(words.get(n, [])) for n, box in enumerate(boxes, 1)}
    found = [(ocr_tables.table_box(t), ocr_tables.table_markdown(t, texts)) for t in tables]
    return [(box, markdown) for box, markdown in found if markdown]


def _read_around_tables(
    gray: Any, tables: list[tuple[ocr_tables.Box, str]], *, languages: str, folder: Path
) -> list[Word]:
    """The words of the page with its tables painted out, with their boxes (TSV)."""
    from PIL import ImageDraw

    rest = gray.copy()
    draw = ImageDraw.Draw(rest)
    for box, _ in tables:
        draw.rectangle(box, fill=255)
    rest.save(folder / "rest.png")
    arguments = [str(folder / "rest.png"), str(folder / "rest"), "-l", languages, "--psm", "3"]
    _finish_tesseract(_start_tesseract([*arguments, "tsv"]))
    return read_tsv(folder / "rest.tsv")


def _start_tesseract(arguments: list[str]) -> subprocess.Popen[bytes]:
    # One thread: tesseract's OpenMP threads spin against each other and against any other
    # busy process; on 2 shared cores a page took 9 s with them and 1.6 s without.
    env = {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT") or "1"}
    return subprocess.Popen(
        ["tesseract", *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _finish_tesseract(process: subprocess.Popen[bytes]) -> None:
    try:
        _, stderr = process.communicate(timeout=_PAGE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise ParseError(f"OCR took longer than {_PAGE_TIMEOUT_S} s on one page") from None
    if process.returncode != 0:
        detail = one_line(stderr.decode("utf-8", "replace"))[:120]
        raise ParseError(f"OCR failed: {detail or 'tesseract error'}", permanent=False)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
