"""OpenTelemetry traces: set-up once per process, our own spans, and the span store.

``tracing_setup()`` is called where a process starts serving (``ragapp/wsgi.py``, ``manage.py``,
the Celery worker's start signals). It installs the SDK's tracer provider, the Django, Celery,
psycopg and httpx instrumentations, and the exporter the settings choose: OTLP over HTTP when
``RAGAPP_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``) is set, else the ``Span`` table,
which the trace waterfall page reads (``/ops/traces/<trace_id>/``).

What spans carry: ids, counts, timings, model names, prompt versions, scores. Never a question,
an answer or a passage: a question is recorded as its length and a short hash only, and every
string attribute set through ``span``/``span_set`` is passed through the log redaction.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState
from opentelemetry.util.types import Attributes

from ragapp.observability import log_context_capture, redact

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
AttributeValue = str | bool | int | float
_tracer = trace.get_tracer("ragapp")
_setup_lock = threading.Lock()
_setup_done = False


# --- set-up -----------------------------------------------------------------------------------


class _NoDetachedClientSpans(Sampler):
    """Root sampler: drops database queries and outgoing HTTP calls made outside any request,
    task or span of ours (the broker's polling, background index rebuilds), which would flood
    the store with one-span traces nobody reads. Everything under a sampled parent is kept."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "NoDetachedClientSpans"


def span_exporters() -> list[SpanExporter]:
    """The exporters the settings ask for: OTLP when an endpoint is set, the database store
    when ``RAGAPP_TRACE_STORE`` is on (its default is on unless OTLP is set)."""
    from django.conf import settings

    exporters: list[SpanExporter] = []
    if settings.RAGAPP_OTLP_ENDPOINT:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.RAGAPP_OTLP_ENDPOINT.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        exporters.append(OTLPSpanExporter(endpoint=endpoint))
    if settings.RAGAPP_TRACE_STORE:
        exporters.append(DatabaseSpanExporter())
    return exporters


def tracing_setup(*, processors: Sequence[SpanProcessor] | None = None) -> bool:
    """Install the tracer provider and the instrumentations, once per process (a forked child
    inherits them; the SDK's batch processor restarts its thread after a fork).

    ``processors`` replaces the configured exporters (tests pass the SDK's in-memory exporter).
    Returns whether this call did the set-up.
    """
    global _setup_done
    from django.conf import settings

    with _setup_lock:
        if _setup_done or not settings.RAGAPP_TRACING:
            return False
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.sdk.resources import Resource

        provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", "ragapp")}
            ),
            sampler=ParentBased(root=_NoDetachedClientSpans()),
            span_limits=SpanLimits(max_attribute_length=1000),
        )
        if processors is None:
            # Small, frequent batches (the SDK's defaults are 512 spans every 5 s): an export
            # holds the GIL of a serving process while it runs, so a short one delays a request
            # less. The standard OTEL_BSP_* variables still override both.
            processors = [
                BatchSpanProcessor(
                    exporter,
                    schedule_delay_millis=float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", 1000)),
                    max_export_batch_size=int(
                        os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 128)
                    ),
                )
                for exporter in span_exporters()
            ]
        for processor in processors:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument(excluded_urls=settings.RAGAPP_TRACE_EXCLUDED_URLS)
        CeleryInstrumentor().instrument()
        PsycopgInstrumentor().instrument(enable_commenter=False)
        HTTPXClientInstrumentor().instrument()
        _setup_done = True
        return True


def tracing_flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered now (tests; a process about to exit)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_ms)


# --- our spans ----------------------------------------------------------------------------------


def _clean(attributes: dict[str, Any]) -> dict[str, AttributeValue]:
    """Drop None values, redact strings: span attributes follow the same rules as logs."""
    out: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = redact(value) if isinstance(value, str) else value
    return out


def _attributes(full: dict[str, Any] | None, short: dict[str, Any]) -> dict[str, AttributeValue]:
    """``full`` keys are used as they are (``gen_ai.request.model``); keyword names get the
    ``ragapp.`` prefix (``chunks=3`` is ``ragapp.chunks``)."""
    return _clean({**(full or {}), **{f"ragapp.{k}": v for k, v in short.items()}})


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None, **short: Any) -> Iterator[trace.Span]:
    """A span around a block, current inside it; an exception marks it failed and propagates."""
    with _tracer.start_as_current_span(name, attributes=_attributes(attributes, short)) as current:
        yield current


def traced(name: str, **short: Any) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorator: the function runs in a span of its own (``span_set`` adds to it)."""

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with span(name, **short):
                return func(*args, **kwargs)

        return wrapper

    return decorate


def span_set(attributes: dict[str, Any] | None = None, **short: Any) -> None:
    """Set attributes on the current span (a no-op when tracing is off)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_attributes(attributes, short))


def span_open(name: str, attributes: dict[str, Any] | None = None, **short: Any) -> trace.Span:
    """A span that is not made current and must be ended by the caller (``span_iter`` does)."""
    return _tracer.start_span(name, attributes=_attributes(attributes, short))


def span_record(
    name: str,
    *,
    start_ns: int,
    end_ns: int,
    error: str = "",
    parent: trace.Span | None = None,
    attributes: dict[str, Any] | None = None,
    **short: Any,
) -> trace.Span:
    """A span for work that already happened (e.g. one provider call, reported with its timing
    once the provider returns): a child of ``parent``, else of the current span. Returned
    ended; pass it as ``parent`` to record its children."""
    recorded = _tracer.start_span(
        name,
        context=trace.set_span_in_context(parent) if parent is not None else None,
        start_time=start_ns,
        attributes=_attributes(attributes, short),
    )
    if error:
        recorded.set_status(Status(StatusCode.ERROR, error))
    recorded.end(end_time=end_ns)
    return recorded


def span_stream(name: str, begin: Callable[[], Iterator[T]], **short: Any) -> Iterator[T]:
    """One span around a streamed piece of work: ``begin()`` runs now inside it (its errors
    propagate at once), then every step of the iterator it returns runs inside it too."""
    opened = span_open(name, **short)
    try:
        with trace.use_span(opened, end_on_exit=False):
            iterator = begin()
    except BaseException:
        opened.end()
        raise
    return span_iter(opened, iterator)


def span_iter(current: trace.Span, iterator: Iterator[T]) -> Iterator[T]:
    """Run ``iterator`` with ``current`` as the current span at every step, then end it.

    A streamed response is iterated after the view returned and after the request's own span
    ended; without this the streamed steps would start new, unrelated traces."""
    ctx = trace.set_span_in_context(current)
    restore = log_context_capture()
    try:
        while True:
            token = otel_context.attach(ctx)
            undo = restore()
            try:
                item = next(iterator)
            except StopIteration:
                return
            except BaseException as exc:
                current.record_exception(exc)
                current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                undo()
                otel_context.detach(token)
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            token = otel_context.attach(ctx)
            try:
                close()
            finally:
                otel_context.detach(token)
        current.end()


def current_trace_id() -> str:
    """The current trace's id as 32 hex characters, or "" outside any recorded span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def current_span_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else ""


def text_fingerprint(text: str) -> dict[str, AttributeValue]:
    """How a question appears in a span: its length and a short hash, never its words (the
    hash lets one find repeats of a question without storing it)."""
    return {
        "ragapp.question.chars": len(text),
        "ragapp.question.sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
    }


# --- the store ----------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    return value


_SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_id",
    "name",
    "kind",
    "service",
    "started_at",
    "duration_ms",
    "status",
    "status_message",
    "attributes",
    "events",
)


def span_row(span_: ReadableSpan) -> tuple[Any, ...]:
    """A finished SDK span as the values of a ``ragapp.models.Span`` row (``_SPAN_COLUMNS``)."""
    ctx = span_.get_span_context()
    assert ctx is not None and span_.start_time is not None
    end = span_.end_time or span_.start_time
    return (
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
        format(span_.parent.span_id, "016x") if span_.parent else "",
        span_.name[:200],
        span_.kind.name.lower(),
        str(span_.resource.attributes.get("service.name", ""))[:100],
        datetime.fromtimestamp(span_.start_time / 1e9, tz=UTC),
        (end - span_.start_time) / 1e6,
        span_.status.status_code.name.lower(),
        redact(span_.status.description or "")[:300],
        json.dumps({k: _json_value(v) for k, v in (span_.attributes or {}).items()}),
        json.dumps(
            [
                {
                    "name": event.name,
                    "offset_ms": round((event.timestamp - span_.start_time) / 1e6, 3),
                    "attributes": {k: _json_value(v) for k, v in (event.attributes or {}).items()},
                }
                for event in span_.events
            ]
        ),
    )


def spans_store(spans: Sequence[ReadableSpan]) -> int:
    """Insert finished spans into the ``Span`` table (a repeat of one is ignored).

    One pipelined ``executemany`` of plain tuples: this runs in the exporter thread of a
    serving process, and building model instances for ``bulk_create`` held the GIL for ~40 ms
    per 512 spans, long enough to show in the p95 of cache hits."""
    from django.db import connection

    from ragapp.models import Span

    rows = [span_row(s) for s in spans if s.get_span_context() is not None]
    if not rows:
        return 0
    columns = ", ".join(_SPAN_COLUMNS)
    values = ", ".join(["%s"] * (len(_SPAN_COLUMNS) - 2) + ["%s::jsonb", "%s::jsonb"])
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {Span._meta.db_table} ({columns}) VALUES ({values})"
            " ON CONFLICT (trace_id, span_id) DO NOTHING",
            rows,
        )
    return len(rows)


class DatabaseSpanExporter(SpanExporter):
    """Stores batches of finished spans in the database (runs in the batch processor's thread,
    with that thread's own database connection)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from django.db import close_old_connections

        close_old_connections()  # a connection broken by a database restart is replaced
        try:
            spans_store(spans)
        except Exception:  # a thread boundary: the app goes on without these spans
            logger.warning("spans not stored", exc_info=True, extra={"spans": len(spans)})
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None
