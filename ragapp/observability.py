"""Request ids and structured JSON logs, with secrets and personal data redacted."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_REDACTIONS = [
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-[REDACTED]"),
    (re.compile(r"(?i)\b(token|bearer)\s+[A-Za-z0-9_\-\.]{20,}"), r"\1 [REDACTED]"),
    (
        re.compile(r"(?i)(api[_-]?key|password|secret)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
        r"\1\2[REDACTED]",
    ),
    (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    (re.compile(r"\b(?:\d[ \-]?){13,19}\b"), "[NUMBER]"),  # card and account numbers
]


def redact(text: str) -> str:
    """Remove API keys, tokens, passwords, e-mail addresses and long digit runs from text."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds the request id to every record and redacts its message and string fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, dict):  # "%(name)s"-style arguments (Celery uses them)
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        elif record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        for key, value in list(vars(record).items()):
            if key not in {"msg", "args"} and isinstance(value, str) and key != "request_id":
                setattr(record, key, redact(value))
        return True


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` from the caller (or makes one) and returns it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = (
            incoming if re.fullmatch(r"[A-Za-z0-9\-]{8,64}", incoming) else uuid.uuid4().hex
        )
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response
