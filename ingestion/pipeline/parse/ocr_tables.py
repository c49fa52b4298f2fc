"""Ruled tables in an OCRed page image: structure from img2table, each cell read on its own.

img2table (OpenCV, no model, nothing downloaded) finds a page's ruling lines, its cells and the
cells merged across rows or columns; with `implicit_rows` it also splits a ruled row that holds
several lines of values (rows told apart by white space only). Its own tesseract pass reads the
whole page at once, where ruling lines and shaded header cells cost whole rows of text (on
single_table.pdf it lost the header and the last row, and then dropped the table), so each cell
is cropped inside its borders and read on its own instead; ocr.py runs tesseract.

Tables become Markdown through `html_table_to_markdown`, the convention of every other parser:
a cell merged across rows repeats its text in each row, one merged across columns pads with
blanks.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingestion.pipeline.parse.elements import html_table_to_markdown
from ingestion.pipeline.parse.types import Block, one_line

if TYPE_CHECKING:
    from ingestion.pipeline.parse.ocr import Word

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # left, top, right, bottom, in pixels of the page image
# Pixels cut from each side of a cell so that its ruling lines are not read as "|" or "l";
# thicker lines are trimmed by looking (`_without_rules`).
_CELL_MARGIN = 3
# Blank border (in the cell's own background colour) that tesseract needs around text.
_CELL_PADDING = 10
# A row or column of a cell nine tenths "dark" (this far below the cell's background) near
# its edge is a ruling line, not text.
_DARK_BELOW_BACKGROUND = 60
_RULE_SHARE = 0.9
_MIN_FILLED_CELLS = 2
_RULE_ONLY = re.compile(r"^[|¦‖]+$")
# img2table holds about 30 bytes a pixel while it looks for tables (220 MB on a 6.9-megapixel
# page): a larger image is looked at shrunk to this size (a Letter page at 200 dpi is 3.7), and
# its cells are still cut from the full image.
MAX_DETECTION_PIXELS = 8_000_000


@dataclass(frozen=True)
class FoundTable:
    """An img2table table (cell boxes, no text yet) and the page pixels per pixel of its boxes."""

    table: Any
    scale: float


def find_tables(gray: Any, png: Path) -> list[FoundTable]:
    """Ruled tables of a page image (`gray`, saved as `png`); [] when it has none."""
    if not _opencv_has_contrib():
        return []
    from img2table.document import Image

    shrink = min(1.0, math.sqrt(MAX_DETECTION_PIXELS / max(1, gray.width * gray.height)))
    if shrink < 1.0:
        size = (max(1, round(gray.width * shrink)), max(1, round(gray.height * shrink)))
        png = png.with_name("detection.png")
        gray.resize(size).save(png)
    tables = Image(src=str(png)).extract_tables(implicit_rows=True)
    return [FoundTable(table, 1 / shrink) for table in tables]


def cell_boxes(found: FoundTable) -> list[Box]:
    """A table's distinct cells, row by row; a merged cell once."""
    boxes: dict[Box, None] = {}
    for row in found.table.content.values():
        for cell in row:
            boxes.setdefault(_box(cell.bbox, found.scale), None)
    return list(boxes)


def cell_images(gray: Any, boxes: list[Box]) -> Iterator[Any]:
    """Each cell cut inside its ruling lines, padded with its own background (a shaded header
    cell padded with white would read as a frame, not as text)."""
    from PIL import Image, ImageOps, ImageStat

    margin = _CELL_MARGIN
    for left, top, right, bottom in boxes:
        inner = (left + margin, top + margin, right - margin, bottom - margin)
        crop = gray.crop(inner) if inner[2] > inner[0] and inner[3] > inner[1] else None
        background = int(ImageStat.Stat(crop).median[0]) if crop else 255
        crop = _without_rules(crop, background) if crop else None
        if crop is None:
            yield Image.new("L", (1, 1), 255)  # too thin to hold text; keeps the numbering
            continue
        yield ImageOps.expand(crop, border=_CELL_PADDING, fill=background)


def _without_rules(crop: Any, background: int) -> Any:
    """The cell less what is left of its ruling lines along its edges (thick lines, or a box
    a few pixels off): the outer rows and columns, up to a quarter of the cell from each side,
    that are nearly all dark."""
    import numpy as np

    dark = np.asarray(crop) < background - _DARK_BELOW_BACKGROUND
    bounds = []
    for share in (dark.mean(axis=1), dark.mean(axis=0)):  # rows, then columns
        reach = len(share) // 4
        ruled = np.flatnonzero(share[:reach] > _RULE_SHARE)
        start = int(ruled[-1]) + 2 if ruled.size else 0  # one more: the line's anti-aliased edge
        ruled = np.flatnonzero(share[len(share) - reach :] > _RULE_SHARE)
        end = len(share) - reach + int(ruled[0]) - 1 if ruled.size else len(share)
        bounds.append((start, end))
    (top, bottom), (left, right) = bounds
    return crop.crop((left, top, right, bottom)) if right > left and bottom > top else None


def words_text(words: list[Word]) -> str:
    """A cell's words on one line; a stray piece of ruling line ("|") is dropped."""
    return one_line(" ".join(word.text for word in words if not _RULE_ONLY.match(word.text)))


def table_markdown(found: FoundTable, texts: dict[Box, str]) -> str:
    """Markdown rows of a table whose cells were read into `texts`; "" when fewer than two
    cells hold text (a frame around a figure or a form box, not a table)."""
    from img2table.tables.extraction import ExtractedTable, TableCell

    if sum(1 for box in cell_boxes(found) if texts.get(box)) < _MIN_FILLED_CELLS:
        return ""
    table, scale = found.table, found.scale
    content = OrderedDict(
        (number, [TableCell(cell.bbox, texts.get(_box(cell.bbox, scale)) or None) for cell in row])
        for number, row in table.content.items()
    )
    # img2table's HTML has the row and column spans of merged cells.
    return html_table_to_markdown(ExtractedTable(bbox=table.bbox, title=None, content=content).html)


def page_blocks(
    tables: list[tuple[Box, str]], words: list[Word], *, page: int | None
) -> list[Block]:
    """Table blocks (box, Markdown) and the other words of the page (read with the tables
    painted out) as paragraphs, in reading order: tesseract's order of paragraphs, each table
    before the first paragraph that starts below its top."""
    paragraphs: dict[tuple[int, int], list[Word]] = {}
    for word in words:
        paragraphs.setdefault((word.block, word.paragraph), []).append(word)
    pending = sorted(tables, key=lambda table: table[0][1])
    blocks: list[Block] = []
    for part in paragraphs.values():
        top = min(word.top for word in part)
        while pending and pending[0][0][1] <= top:
            blocks.append(Block(pending.pop(0)[1], page, "", "table"))
        blocks.append(Block(one_line(" ".join(word.text for word in part)), page, "", "text"))
    blocks.extend(Block(markdown, page, "", "table") for _, markdown in pending)
    return blocks


def table_box(found: FoundTable) -> Box:
    return _box(found.table.bbox, found.scale)


def _box(bbox: Any, scale: float) -> Box:
    return (
        round(bbox.x1 * scale),
        round(bbox.y1 * scale),
        round(bbox.x2 * scale),
        round(bbox.y2 * scale),
    )


@functools.cache
def _opencv_has_contrib() -> bool:
    """img2table needs OpenCV's contrib modules; pip can leave opencv-python (which
    unstructured-inference wants) installed over opencv-contrib-python, whose files share `cv2`."""
    import cv2

    if hasattr(cv2, "ximgproc"):
        return True
    logger.warning(
        "OCR table recovery is off: cv2 has no ximgproc; reinstall opencv-contrib-python",
        extra={"cv2_version": cv2.__version__},
    )
    return False
