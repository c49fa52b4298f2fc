"""E-mail: EML (RFC 822, any charset, malformed headers tolerated) and Outlook MSG.

The headers and body become the document; attachments come back as `Attachment`s that the
service ingests as child documents. Embedded messages (forwards, digests) stay inline.
"""

from __future__ import annotations

import email
import email.header
import email.policy
from email.message import Message
from pathlib import Path

from ingestion.pipeline.parse.markup import html_to_blocks, text_to_blocks
from ingestion.pipeline.parse.sniff import decode_text
from ingestion.pipeline.parse.types import Attachment, Block, ParseError, one_line, short

_SHOWN_HEADERS = ("From", "To", "Cc", "Date", "Subject")
MAX_ATTACHMENTS = 50


def parse_eml(path: Path) -> tuple[str, list[Block], list[Attachment]]:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:200]:
        data = decode_text(data).encode("utf-8")  # a whole message saved as UTF-16
    # compat32 is the tolerant parser: it keeps going through malformed headers.
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if message.get_content_type() == "multipart/encrypted" or _is_pgp(message):
        raise ParseError("encrypted")
    subject = one_line(_header(message, "Subject"))
    blocks = [Block(_header_text(message), None, subject, "text")]
    attachments: list[Attachment] = []
    _walk(message, subject, blocks, attachments)
    if len(blocks) == 1 and not attachments:
        raise ParseError("no extractable text")
    return subject, blocks, attachments[:MAX_ATTACHMENTS]


def parse_msg(path: Path) -> tuple[str, list[Block], list[Attachment]]:
    from oxmsg import Message as OutlookMessage

    try:
        message = OutlookMessage.load(str(path))
        subject = one_line(message.subject or "")
        header = "\n".join(
            f"{name}: {value}"
            for name, value in (
                ("From", message.sender),
                ("Date", message.sent_date),
                ("Subject", subject),
            )
            if value
        )
        blocks = [Block(header, None, subject, "text")] if header else []
        if (message.body or "").strip():
            blocks.extend(text_to_blocks(message.body, heading=subject))
        elif message.html_body:
            blocks.extend(html_to_blocks(message.html_body, heading=subject))
        attachments = [
            Attachment(name=a.file_name or f"attachment-{n}", data=a.file_bytes)
            for n, a in enumerate(message.attachments, start=1)
            if a.file_bytes
        ]
    except ParseError:
        raise
    except Exception as exc:  # the OLE reader raises any type on a damaged file
        raise ParseError(f"corrupt MSG: {short(exc)}") from None
    return subject, blocks, attachments[:MAX_ATTACHMENTS]


def _walk(part: Message, subject: str, blocks: list[Block], attachments: list[Attachment]) -> None:
    content_type = part.get_content_type()
    if part.is_multipart():
        children = part.get_payload()
        if content_type == "multipart/alternative":
            # The same body twice: plain text is cleaner to index than HTML.
            plain = [c for c in children if c.get_content_type() == "text/plain"]
            children = plain[:1] or children[-1:]
        for child in children:
            _walk(child, subject, blocks, attachments)
        return
    if content_type == "message/rfc822" and isinstance(part.get_payload(), list):
        for inner in part.get_payload():
            blocks.append(Block(_header_text(inner), None, subject, "text"))
            _walk(inner, subject, blocks, attachments)
        return
    filename = part.get_filename()
    disposition = (part.get("Content-Disposition") or "").lower()
    if filename or disposition.startswith("attachment") or not content_type.startswith("text/"):
        payload = part.get_payload(decode=True)
        if payload:
            name = filename or f"attachment-{len(attachments) + 1}"
            attachments.append(Attachment(name=name, data=payload))
        return
    text = _decoded(part)
    if not text.strip():
        return
    if content_type == "text/html":
        blocks.extend(html_to_blocks(text, heading=subject))
    else:
        blocks.extend(text_to_blocks(text, heading=subject))


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    charset = part.get_content_charset()
    if charset:
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:  # an unknown or mangled charset name
            pass
    try:
        return decode_text(payload)
    except ParseError:
        return ""


def _is_pgp(message: Message) -> bool:
    if message.is_multipart():
        return False
    body = message.get_payload(decode=True) or b""
    return body.lstrip().startswith(b"-----BEGIN PGP MESSAGE-----")


def _header(message: Message, name: str) -> str:
    raw = message.get(name)
    if raw is None:
        return ""
    try:
        decoded = email.header.decode_header(str(raw))
        return "".join(
            text.decode(charset or "utf-8", errors="replace") if isinstance(text, bytes) else text
            for text, charset in decoded
        )
    except (LookupError, ValueError):
        return str(raw)


def _header_text(message: Message) -> str:
    lines = [f"{name}: {one_line(_header(message, name))}" for name in _SHOWN_HEADERS]
    return "\n".join(line for line in lines if not line.endswith(": "))
