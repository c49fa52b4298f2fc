"""The real type of a file from its bytes, and text decoding of unknown encodings."""

from __future__ import annotations

import codecs
import re
import zipfile
from pathlib import Path

import filetype
from charset_normalizer import from_bytes

from ingestion.pipeline.parse.types import (
    DOCX,
    EML,
    HTML,
    IMAGE_TYPES,
    MARKDOWN,
    MSG,
    PDF,
    PPTX,
    TEXT,
    XLSX,
    ParseError,
)

_OFFICE_PARTS = {"word/document.xml": DOCX, "ppt/presentation.xml": PPTX, "xl/workbook.xml": XLSX}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SNIFF_BYTES = 8192
_MARKDOWN_SUFFIXES = {".md", ".markdown"}
_HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
_HTML_ROOT = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_HTML_ANY_TAG = re.compile(r"<(p|div|h[1-6]|table|body|head|ul|ol|span|a)[\s>]", re.IGNORECASE)
# An e-mail starts with RFC 822 headers; two of these among its first lines is convincing.
_MAIL_HEADER = re.compile(
    r"^(from|to|subject|date|message-id|mime-version|received|return-path|content-type|cc):",
    re.IGNORECASE | re.MULTILINE,
)
# Single-byte Western text is ambiguous between code pages; prefer the one we document.
_WESTERN_CODEC = "cp1252"
_ENCODING_CHAOS_TOLERANCE = 0.01


def detect_content_type(path: Path, *, filename: str) -> str:
    """Return the MIME type of the file from its bytes; raise `ParseError` if unsupported."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head:
        raise ParseError("no extractable text")
    if head.startswith(_OLE_MAGIC):
        return _ole_type(path)
    kind = filetype.guess(head)
    if kind is not None:
        if kind.mime == PDF or kind.mime in IMAGE_TYPES:
            return kind.mime
        mime = _office_type(path) if kind.extension == "zip" else kind.mime
        if mime in (DOCX, PPTX, XLSX):
            return mime
        raise ParseError(f"unsupported file type: {mime}")
    try:
        sample = decode_text(head, partial=len(head) == _SNIFF_BYTES)
    except ParseError:
        raise ParseError("unsupported file type: application/octet-stream") from None
    suffix = Path(filename).suffix.lower()
    if _looks_like_mail(sample) and suffix not in _HTML_SUFFIXES | _MARKDOWN_SUFFIXES:
        return EML
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


def _looks_like_mail(sample: str) -> bool:
    first_lines = "\n".join(sample.lstrip().splitlines()[:30])
    return len({m.lower() for m in _MAIL_HEADER.findall(first_lines)}) >= 2


def _office_type(path: Path) -> str:
    """Tell Office files from plain ZIPs; filetype only looks at the first archive entry."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return "application/zip"
    return next((mime for part, mime in _OFFICE_PARTS.items() if part in names), "application/zip")


def _ole_type(path: Path) -> str:
    """An OLE2 container: an Outlook message, an encrypted Office file, or something unsupported.

    Password-protected DOCX/XLSX/PPTX are stored as an OLE2 file holding an `EncryptedPackage`.
    """
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            streams = {"/".join(entry) for entry in ole.listdir()}
    except Exception:  # olefile raises OSError or ValueError on a damaged container
        raise ParseError("unsupported file type: application/x-ole-storage") from None
    if "EncryptedPackage" in streams:
        raise ParseError("encrypted")
    if any(name.startswith("__substg1.0_") or "/__substg1.0_" in name for name in streams):
        return MSG
    raise ParseError("unsupported file type: application/x-ole-storage (legacy Office format)")
