"""The data every parser returns, and the one error type they raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

PDF = "application/pdf"
_OOXML = "application/vnd.openxmlformats-officedocument"
DOCX = f"{_OOXML}.wordprocessingml.document"
PPTX = f"{_OOXML}.presentationml.presentation"
XLSX = f"{_OOXML}.spreadsheetml.sheet"
HTML = "text/html"
MARKDOWN = "text/markdown"
TEXT = "text/plain"
EML = "message/rfc822"
MSG = "application/vnd.ms-outlook"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/bmp", "image/gif", "image/webp")
SUPPORTED_CONTENT_TYPES = (PDF, DOCX, PPTX, XLSX, HTML, MARKDOWN, TEXT, EML, MSG, *IMAGE_TYPES)

# Called as pages (or other units) are parsed: (done, total).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Block:
    """One piece of document content, in reading order."""

    text: str
    page: int | None  # 1-based page number where known (PDF, slide, sheet), else None
    heading: str  # nearest enclosing section heading, "" when none
    kind: str  # "text" | "table" | "title"
    hidden: bool = False  # invisible to a human reader (hidden HTML, white text): suspicious


@dataclass(frozen=True)
class Attachment:
    """A file carried inside another (an e-mail attachment); ingested as a child document."""

    name: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedDocument:
    """A parsed file: its title, its sniffed MIME type, its blocks and any attachments."""

    title: str
    content_type: str
    blocks: list[Block]
    attachments: list[Attachment] = field(default_factory=list)
    pages: int = 0  # pages (or slides, sheets) seen, 0 when the format has none
    ocr_pages: int = 0  # pages whose text came from OCR


@dataclass(frozen=True)
class ParseLimits:
    """What a single upload may expand to; set from RAGAPP_MAX_UNCOMPRESSED_MB and friends."""

    max_uncompressed_bytes: int = 300 * 1024 * 1024
    max_ratio: float = 200.0
    max_entries: int = 10_000
    max_image_pixels: int = 90_000_000


class ParseError(Exception):
    """A document cannot be parsed; `reason` is short and safe to show to a person.

    `permanent` is False when retrying later could succeed (the environment, not the file, failed).
    """

    def __init__(self, reason: str, *, permanent: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def one_line(text: str) -> str:
    return " ".join(text.split())


def short(exc: BaseException) -> str:
    detail = one_line(str(exc)) or type(exc).__name__
    return detail if len(detail) <= 120 else detail[:117] + "..."
