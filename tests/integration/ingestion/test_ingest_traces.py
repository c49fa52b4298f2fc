"""Traces of real ingestions: a span per stage with the document id and counts, in process and
stored in the database by a real worker process, in the trace of the upload request."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from opentelemetry.trace import SpanKind

from ingestion import services
from ingestion.models import Chunk, Document
from ragapp.models import Span
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration]

STAGES = [
    "ragapp.ingest.parse",
    "ragapp.ingest.chunk",
    "ragapp.ingest.embed",
    "ragapp.ingest.index",
]


@pytest.mark.django_db
def test_an_ingestion_records_a_span_per_stage_with_the_document_and_its_counts(spans):
    collection = services.collection_get_or_create()
    path = settings.RAGAPP_SAMPLE_KB_DIR / "account-and-security.md"
    with path.open("rb") as fh:
        document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
    services.document_process(str(document.id))
    chunks = Chunk.objects.filter(document=document).count()
    named = {s.name: s for s in spans.get_finished_spans()}
    # One root per task: the parse task (parse, chunk), then the embed task (embed, index).
    roots = {
        s.attributes["ragapp.task_stage"]: s
        for s in spans.get_finished_spans()
        if s.name == "ragapp.ingest"
    }
    assert roots["parse"].attributes["ragapp.outcome"] == "parsed"
    assert roots["embed"].attributes["ragapp.outcome"] == "ready"
    for stage in STAGES:
        root = roots[
            "parse" if stage in ("ragapp.ingest.parse", "ragapp.ingest.chunk") else "embed"
        ]
        assert root.attributes["ragapp.document_id"] == str(document.id)
        assert named[stage].parent.span_id == root.context.span_id
        assert named[stage].attributes["ragapp.document_id"] == str(document.id)
    assert named["ragapp.ingest.parse"].attributes["ragapp.blocks"] > 0
    assert named["ragapp.ingest.chunk"].attributes["ragapp.chunks"] == chunks
    assert named["ragapp.ingest.embed"].attributes["ragapp.embedded"] == chunks
    assert named["ragapp.ingest.index"].attributes["ragapp.chunks"] == chunks
    starts = [named[stage].start_time for stage in STAGES]
    assert starts == sorted(starts)
    timings = Document.objects.get(id=document.id).stage_seconds
    for stage in STAGES:
        recorded = named[stage]
        seconds = (recorded.end_time - recorded.start_time) / 1e9
        assert seconds == pytest.approx(timings[stage.rsplit(".", 1)[1]], abs=0.05)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_worker_stores_its_ingestion_spans_in_the_upload_requests_trace(
    worker, client_for, bob, spans
):
    fh = io.BytesIO((settings.RAGAPP_SAMPLE_KB_DIR / "offline-and-sync.md").read_bytes())
    fh.name = "offline-and-sync.md"
    response = client_for(bob).post("/api/v1/documents", {"file": fh}, format="multipart")
    assert response.status_code == 201
    document_id = response.json()["id"]
    (request,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    trace_id = format(request.context.trace_id, "032x")

    def final():  # type: ignore[no-untyped-def]
        return Document.objects.filter(id=document_id, status=Document.Status.READY).exists()

    def stored():  # type: ignore[no-untyped-def]
        found = Span.objects.filter(trace_id=trace_id, name="ragapp.ingest.index")
        return found.exists()

    wait_until(final, timeout=240)  # the worker loads the embedder first: slow on a busy machine
    wait_until(stored, timeout=30)  # the worker exports in batches (every 5 s)
    names = set(Span.objects.filter(trace_id=trace_id).values_list("name", flat=True))
    assert {"ragapp.ingest", *STAGES} <= names
    assert any(name.startswith("run/") for name in names)  # the Celery task's own span
    roots = Span.objects.filter(trace_id=trace_id, name="ragapp.ingest")
    assert {r.attributes["ragapp.task_stage"] for r in roots} == {"parse", "embed"}
    for root in roots:
        assert root.attributes["ragapp.document_id"] == document_id
        assert root.service == "ragapp"
    stages = Span.objects.filter(trace_id=trace_id, name__in=STAGES)
    assert {s.parent_id for s in stages} == {r.span_id for r in roots}
