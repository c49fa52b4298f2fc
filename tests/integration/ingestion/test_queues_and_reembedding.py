"""Parsing and embedding are separate tasks on separate queues, and a model change re-embeds
every chunk in the background while retrieval only ever sees the current model's chunks.

Real worker processes on the test database, each consuming the queues a test gives it.
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from ingestion import services
from ingestion.models import Chunk, Document, PendingChunk
from retrieval.providers.registry import embedder
from retrieval.services import passages_search
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SAMPLES = ["account-and-security.md", "offline-and-sync.md", "billing-and-plans.html"]


@pytest.fixture
def current_embedder(settings):  # type: ignore[no-untyped-def]
    """Switch this process's embedder with ``use(kind)``, as a restart with a new setting does."""

    def use(kind: str):  # type: ignore[no-untyped-def]
        settings.RAGAPP_EMBEDDER = kind
        embedder.cache_clear()
        return embedder()

    yield use
    embedder.cache_clear()


def upload_samples() -> list[Document]:
    collection = services.collection_get_or_create("reembed-test")
    documents = []
    for name in SAMPLES:
        path = django_settings.RAGAPP_SAMPLE_KB_DIR / name
        with path.open("rb") as fh:
            documents.append(services.document_create(fh=fh, name=name, collection=collection)[0])
    return documents


def all_final() -> bool:
    return not Document.objects.exclude(status__in=["ready", "failed"]).exists()


def test_a_parsed_document_waits_on_the_embed_queue_until_an_embed_worker_takes_it(
    spawn_ingest_worker, settings
):
    queue = "queues-test"
    settings.RAGAPP_QUEUE_PARSE, settings.RAGAPP_QUEUE_EMBED = f"{queue}.parse", f"{queue}.embed"
    parser = spawn_ingest_worker(queue, RAGAPP_QUEUE_EMBED=f"{queue}.nobody")
    (document, *_) = upload_samples()[:1]

    def handed_over() -> bool:
        document.refresh_from_db()
        return (document.status, document.stage) == ("queued", "chunked")

    wait_until(handed_over, timeout=120)
    assert document.attempts == 0
    staged = PendingChunk.objects.filter(document=document)
    drafts = staged.count()
    assert drafts and not staged.exclude(embedding_model="").exists()  # no vectors yet
    parser.kill()

    # A worker of the embed queue alone (its start-up sweep finds nothing stale).
    spawn_ingest_worker(queue, RAGAPP_QUEUE_PARSE=f"{queue}.nobody")
    services.document_enqueue(document_id=str(document.id), stage=document.stage)
    wait_until(lambda: Document.objects.get(id=document.id).status == "ready", timeout=120)
    assert Chunk.objects.filter(document=document).count() == drafts
    assert not staged.exists()


def test_a_model_change_reembeds_every_chunk_and_retrieval_never_mixes_the_two_models(
    spawn_ingest_worker, settings, current_embedder, tmp_path
):
    queue = "reembed-test"
    settings.RAGAPP_QUEUE_PARSE, settings.RAGAPP_QUEUE_EMBED = f"{queue}.parse", f"{queue}.embed"
    torch = current_embedder("torch")
    first = spawn_ingest_worker(queue, RAGAPP_EMBEDDER="torch")
    upload_samples()
    wait_until(all_final, timeout=180)
    assert set(Chunk.objects.values_list("embedding_model", flat=True)) == {torch.name}
    before = set(Chunk.objects.values_list("document_id", "index", "text"))
    first.kill()

    # The setting changes: the new worker's start-up sweep queues the re-embedding, which
    # pauses (a test hook) after its first committed batch, with the chunks split between models.
    onnx = current_embedder("onnx")
    marker = tmp_path / "paused"
    switching = spawn_ingest_worker(
        queue,
        RAGAPP_EMBEDDER="onnx",
        RAGAPP_EMBEDDING_BATCH="2",
        RAGAPP_INGEST_SWEEP_EVERY_S="3600",
        RAGAPP_TEST_PAUSE_AT="reembed",
        RAGAPP_TEST_PAUSE_FILE=str(marker),
    )
    wait_until(marker.exists, timeout=240)
    models = set(Chunk.objects.values_list("embedding_model", flat=True))
    assert models == {torch.name, onnx.name}  # mid-switch

    trace = passages_search("How long is a password reset link valid?", collection_ids=None)
    current = set(Chunk.objects.filter(embedding_model=onnx.name).values_list("id", flat=True))
    found = {cid for stage in (trace.dense, trace.lexical, trace.fused) for cid, _ in stage}
    assert trace.ranked and found
    assert found | {c.chunk_id for c in trace.ranked} <= current

    # Killed mid-switch: the next worker's start-up sweep resumes with what is left.
    switching.kill()
    spawn_ingest_worker(queue, RAGAPP_EMBEDDER="onnx", RAGAPP_INGEST_SWEEP_EVERY_S="3600")
    wait_until(lambda: not services.chunk_models_stale(), timeout=240)
    assert set(Chunk.objects.values_list("embedding_model", flat=True)) == {onnx.name}
    assert set(Chunk.objects.values_list("document_id", "index", "text")) == before
    answer = passages_search("How long is a password reset link valid?", collection_ids=None)
    assert any("30 minutes" in c.text for c in answer.ranked)
