"""The span store: the exporter writes finished spans to the database, and old ones are
deleted after the retention period."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from opentelemetry.sdk.trace.export import SpanExportResult

from ragapp.models import Span
from ragapp.traces import span_cleanup
from ragapp.tracing import DatabaseSpanExporter, span, span_set

pytestmark = [pytest.mark.integration]


@pytest.mark.django_db(transaction=True)  # the exporter manages its own connection
def test_the_exporter_stores_finished_spans_with_parents_status_and_attributes(spans):
    with span("ragapp.outer", document_id="d-1"):
        with span("ragapp.inner"):
            span_set(chunks=3)
        try:
            with span("ragapp.failing"):
                raise RuntimeError("card 4111 1111 1111 1111 declined")
        except RuntimeError:
            pass
    finished = spans.get_finished_spans()
    exporter = DatabaseSpanExporter()
    assert exporter.export(finished) == SpanExportResult.SUCCESS
    assert exporter.export(finished) == SpanExportResult.SUCCESS  # a repeat is ignored
    assert Span.objects.count() == 3
    outer = Span.objects.get(name="ragapp.outer")
    inner = Span.objects.get(name="ragapp.inner")
    failing = Span.objects.get(name="ragapp.failing")
    assert outer.parent_id == "" and inner.parent_id == failing.parent_id == outer.span_id
    assert len({outer.trace_id, inner.trace_id, failing.trace_id}) == 1
    assert outer.attributes == {"ragapp.document_id": "d-1"}
    assert inner.attributes == {"ragapp.chunks": 3}
    assert failing.status == "error"
    (event,) = failing.events
    assert event["name"] == "exception"
    assert "4111" not in str(event["attributes"]) and "4111" not in failing.status_message
    assert outer.duration_ms >= inner.duration_ms > 0


@pytest.mark.django_db
def test_spans_older_than_the_retention_are_deleted(settings):
    settings.RAGAPP_TRACE_RETENTION_DAYS = 7
    now = timezone.now()
    for n, age in enumerate([0, 6, 8, 30]):
        Span.objects.create(
            trace_id=f"{n:032x}",
            span_id=f"{n:016x}",
            name="ragapp.answer",
            kind="internal",
            started_at=now - timedelta(days=age),
            duration_ms=1.0,
            status="ok",
        )
    assert span_cleanup() == 2
    assert sorted(Span.objects.values_list("trace_id", flat=True)) == [f"{0:032x}", f"{1:032x}"]
    assert span_cleanup(older_than_days=0) == 2


def test_spans_are_sent_to_an_otlp_collector_when_an_endpoint_is_set(settings, spans):
    """A real OTLP/HTTP request to a loopback collector, decoded with the OTLP protobufs."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from ragapp.tracing import span_exporters

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.RAGAPP_OTLP_ENDPOINT = f"http://127.0.0.1:{server.server_port}"
        settings.RAGAPP_TRACE_STORE = False
        (exporter,) = span_exporters()
        with span("ragapp.answer", decision="answered"):
            pass
        assert exporter.export(spans.get_finished_spans()) == SpanExportResult.SUCCESS
    finally:
        server.shutdown()
    ((path, body),) = received
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    (sent,) = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sent.name == "ragapp.answer"
    assert {a.key: a.value.string_value for a in sent.attributes} == {"ragapp.decision": "answered"}
