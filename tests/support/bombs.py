"""Bombs made on the fly for tests: small on disk, huge when inflated or decoded.

Nothing large is committed: a DOCX-shaped ZIP whose one part is megabytes of zeros compresses
about 1000 times; a PNG header may declare any number of pixels over a few bytes of data.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

_MB = 1024 * 1024
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
)


def docx_bomb(path: Path, *, inflated_mb: int, part: str = "word/document.xml") -> Path:
    """A ZIP that sniffs as DOCX whose ``part`` inflates to ``inflated_mb`` MB of zeros (about
    230 times smaller on disk: level 1 builds it fastest)."""
    zeros = bytes(_MB)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", _CONTENT_TYPES)
        if part != "word/document.xml":
            zf.writestr("word/document.xml", "<w:document/>")
        with zf.open(part, "w", force_zip64=True) as fh:
            for _ in range(inflated_mb):
                fh.write(zeros)
    return path


def docx_with_entries(path: Path, *, entries: int) -> Path:
    """A ZIP that sniffs as DOCX holding ``entries`` tiny parts."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("word/document.xml", "<w:document/>")
        for n in range(entries - 1):
            zf.writestr(f"word/media/p{n}.xml", "")
    return path


def docx_lying_about_size(path: Path, *, real_mb: int, declared_bytes: int) -> Path:
    """A DOCX-shaped ZIP whose central directory declares ``declared_bytes`` for a part that
    really inflates to ``real_mb`` MB (the sizes are rewritten after the archive is made)."""
    docx_bomb(path, inflated_mb=real_mb)
    data = bytearray(path.read_bytes())
    # A central directory header (PK\x01\x02) holds the uncompressed size at offset 24.
    start = 0
    while (at := data.find(b"PK\x01\x02", start)) != -1:
        (size,) = struct.unpack_from("<I", data, at + 24)
        if size == real_mb * _MB:
            struct.pack_into("<I", data, at + 24, declared_bytes)
        start = at + 4
    path.write_bytes(bytes(data))
    return path


def png_declaring(path: Path, *, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` pixels over a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path
