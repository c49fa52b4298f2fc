"""Request ids and structured JSON logs, with secrets and personal data redacted.

Every record carries ``request_id``, ``trace_id`` and ``span_id`` (empty outside a request or a
span) and, where the code knows them, ``user``, ``conversation`` and ``prompt_version``
(``log_context_update``).
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType

from django.http import HttpRequest, HttpResponse
from opentelemetry import trace

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# Fields known about the current unit of work (user, conversation, prompt_version); each update
# sets a new mapping, so a copied context never sees another's changes.
_EMPTY: Mapping[str, str] = MappingProxyType({})
log_fields_var: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_fields", default=_EMPTY
)
_IDS = ("request_id", "trace_id", "span_id")

# (pattern, replacement, substrings of which every match contains one, lower-cased): the
# substring test skips a pattern cheaply on the long texts it cannot match (traced SQL).
_REDACTIONS = [
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-[REDACTED]", ("sk-",)),
    (
        re.compile(r"(?i)\b(token|bearer)\s+[A-Za-z0-9_\-\.]{20,}"),
        r"\1 [REDACTED]",
        ("token", "bearer"),
    ),
    (
        re.compile(r"(?i)(api[_-]?key|password|secret)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
        r"\1\2[REDACTED]",
        ("api", "password", "secret"),
    ),
    (re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}"), "[EMAIL]", ("@",)),
    (re.compile(r"\b(?:\d[ \-]?){13,19}\b"), "[NUMBER]", ("",)),  # card and account numbers
]


def redact(text: str) -> str:
    """Remove API keys, tokens, passwords, e-mail addresses and long digit runs from text."""
    lower = text.lower()
    for pattern, replacement, hints in _REDACTIONS:
        if any(hint in lower for hint in hints):
            text = pattern.sub(replacement, text)
    return text


def log_context_update(**fields: object) -> None:
    """Add fields to every later log record of this request or task; None leaves a field as it
    is, "" removes it."""
    merged = {**log_fields_var.get()}
    for key, value in fields.items():
        if value == "":
            merged.pop(key, None)
        elif value is not None:
            merged[key] = str(value)
    log_fields_var.set(MappingProxyType(merged))


def log_context_clear() -> None:
    """Forget the fields of the previous unit of work (a Celery task starting)."""
    log_fields_var.set(_EMPTY)


def log_context_capture() -> Callable[[], Callable[[], None]]:
    """Snapshot the request id and fields; calling the result puts them back and returns the
    undo. A streamed response runs after its request's middleware has reset them."""
    request_id, fields = request_id_var.get(), log_fields_var.get()

    def restore() -> Callable[[], None]:
        tokens = request_id_var.set(request_id), log_fields_var.set(fields)

        def undo() -> None:
            request_id_var.reset(tokens[0])
            log_fields_var.reset(tokens[1])

        return undo

    return restore


class ContextFilter(logging.Filter):
    """Adds the request, trace and span ids and the known fields (user, conversation, prompt
    version) to every record, and redacts its message and string fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else ""
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else ""
        for key, value in log_fields_var.get().items():
            if not hasattr(record, key):  # an explicit extra= wins
                setattr(record, key, value)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, dict):  # "%(name)s"-style arguments (Celery uses them)
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        elif record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        for key, value in list(vars(record).items()):
            if key not in {"msg", "args", *_IDS} and isinstance(value, str):
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
        fields_token = log_fields_var.set(_EMPTY)
        try:
            response = self.get_response(request)
        finally:
            log_fields_var.reset(fields_token)
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response
