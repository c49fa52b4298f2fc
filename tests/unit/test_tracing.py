"""Tracing helpers without a database: exporter choice, the root sampler, redaction of span
attributes, spans around streamed work, and the waterfall layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import SpanKind

from ragapp.models import Span
from ragapp.observability import log_context_update, log_fields_var
from ragapp.traces import waterfall_build
from ragapp.tracing import (
    DatabaseSpanExporter,
    _NoDetachedClientSpans,
    current_trace_id,
    span,
    span_exporters,
    span_stream,
)


def test_spans_are_stored_by_default_and_sent_over_otlp_when_an_endpoint_is_set():
    with override_settings(RAGAPP_OTLP_ENDPOINT="", RAGAPP_TRACE_STORE=True):
        assert [type(e) for e in span_exporters()] == [DatabaseSpanExporter]
    with override_settings(RAGAPP_OTLP_ENDPOINT="http://collector:4318", RAGAPP_TRACE_STORE=False):
        (exporter,) = span_exporters()
        assert isinstance(exporter, OTLPSpanExporter)
        assert exporter._endpoint == "http://collector:4318/v1/traces"


def test_database_queries_outside_any_request_or_task_are_not_traced():
    sampler = _NoDetachedClientSpans()
    assert sampler.should_sample(None, 1, "SELECT", kind=SpanKind.CLIENT).decision == Decision.DROP
    for kind in (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.INTERNAL):
        decision = sampler.should_sample(None, 1, "x", kind=kind).decision
        assert decision == Decision.RECORD_AND_SAMPLE


def test_span_attributes_are_redacted_like_logs_and_none_is_dropped(spans):
    with span(
        "ragapp.test",
        {"gen_ai.request.model": "m"},
        note="key sk-abcdefghijklmnopqrstuv",
        gone=None,
    ):
        pass
    (recorded,) = spans.get_finished_spans()
    assert dict(recorded.attributes) == {
        "gen_ai.request.model": "m",
        "ragapp.note": "key sk-[REDACTED]",
    }


def test_a_streamed_span_is_current_at_every_step_and_ends_when_the_stream_closes(spans):
    seen = []
    closed = []

    def begin():  # type: ignore[no-untyped-def]
        log_context_update(conversation="c-1")
        outer = current_trace_id()

        def steps():  # type: ignore[no-untyped-def]
            try:
                for n in range(3):
                    seen.append(
                        (current_trace_id() == outer, log_fields_var.get().get("conversation"))
                    )
                    yield n
            finally:
                closed.append(current_trace_id() == outer)

        return steps()

    stream = span_stream("ragapp.test.stream", begin)
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaks into the caller
    assert next(stream) == 0
    assert current_trace_id() == ""
    assert next(stream) == 1
    stream.close()  # the client went away
    assert seen == [(True, "c-1"), (True, "c-1")]
    assert closed == [True]
    assert [s.name for s in spans.get_finished_spans()] == ["ragapp.test.stream"]


def test_a_stream_that_fails_before_it_starts_ends_its_span_and_raises(spans):
    def begin():  # type: ignore[no-untyped-def]
        raise ValueError("over budget")

    with pytest.raises(ValueError):
        span_stream("ragapp.test.stream", begin)
    (recorded,) = spans.get_finished_spans()
    assert recorded.end_time is not None


def _span(span_id: str, parent: str, start_ms: float, duration_ms: float) -> Span:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return Span(
        trace_id="a" * 32,
        span_id=span_id,
        parent_id=parent,
        name=f"s{span_id}",
        kind="internal",
        started_at=base + timedelta(milliseconds=start_ms),
        duration_ms=duration_ms,
        status="unset",
    )


def test_the_waterfall_puts_children_under_parents_on_the_traces_time_axis():
    spans = [
        _span("2", "1", 10, 40),  # stored out of order: the layout sorts
        _span("1", "", 0, 100),
        _span("4", "9", 60, 5),  # its parent was not stored: shown as a root
        _span("3", "2", 20, 0.01),
    ]
    waterfall = waterfall_build("a" * 32, spans)
    assert [(r.span.span_id, r.depth) for r in waterfall.rows] == [
        ("1", 0),
        ("2", 1),
        ("3", 2),
        ("4", 0),
    ]
    assert waterfall.duration_ms == 100
    first, second, tiny, orphan = waterfall.rows
    assert (first.offset_pct, first.width_pct) == (0, 100)
    assert (second.offset_pct, second.width_pct) == (10, 40)
    assert tiny.width_pct == 0.3  # still visible
    assert (orphan.offset_pct, orphan.width_pct) == (60, 5)


def test_an_empty_trace_has_no_rows():
    assert waterfall_build("b" * 32, []).rows == []
