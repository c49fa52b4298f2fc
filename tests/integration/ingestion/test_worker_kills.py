"""Durability: a worker SIGKILLed mid-ingestion loses nothing and duplicates nothing.

One 12-page PDF is killed three times, at deterministic points (the worker pauses there through
a test-only hook and touches a marker file): during parsing, during embedding (after batches
were embedded) and inside the publishing transaction. Each next worker's start-up sweep finds
the document stuck (no progress for RAGAPP_INGEST_STALE_S) and re-queues it to the task of the
stage it was in (parse or embed, each on its own queue); the last one finishes. The default
SQLAlchemy broker never redelivers a killed task, so only the sweep can recover it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings

from ingestion import services
from ingestion.models import Chunk, Document, PendingChunk
from ingestion.pipeline.chunk import chunk_blocks
from ingestion.pipeline.parse import parse_file
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PDF = Path(__file__).resolve().parents[2] / "fixtures" / "ingestion" / "twelve-pages.pdf"
QUEUE = "ingest-kill-test"
STALE_S = 3
COMMON_ENV = {
    "RAGAPP_EMBEDDING_BATCH": "4",
    "RAGAPP_INGEST_MAX_ATTEMPTS": "10",
    "RAGAPP_INGEST_STALE_S": str(STALE_S),
    "RAGAPP_INGEST_SWEEP_EVERY_S": "3600",  # only the sweep at start-up runs in this test
}


def expected_chunk_texts() -> list[str]:
    from retrieval.providers.registry import embedder

    parsed = parse_file(PDF, filename=PDF.name)
    drafts = chunk_blocks(
        parsed.blocks,
        max_tokens=settings.RAGAPP_CHUNK_TOKENS,
        overlap=settings.RAGAPP_CHUNK_OVERLAP,
        count_tokens=services.token_counter(embedder()),
    )
    return [d.text for d in drafts]


def test_a_document_killed_during_parse_embed_and_index_ends_ready_with_exact_chunks(
    spawn_ingest_worker, settings, tmp_path
):
    settings.RAGAPP_QUEUE_PARSE, settings.RAGAPP_QUEUE_EMBED = f"{QUEUE}.parse", f"{QUEUE}.embed"
    marker = tmp_path / "paused"
    collection = services.collection_get_or_create("kill-test")
    staged_at_kill: dict[str, int] = {}

    worker = spawn_ingest_worker(
        QUEUE,
        **{**COMMON_ENV, "RAGAPP_INGEST_SWEEP_EVERY_S": "0"},
        RAGAPP_TEST_PAUSE_AT="parse",
        RAGAPP_TEST_PAUSE_FILE=str(marker),
    )
    with PDF.open("rb") as fh:
        document, _ = services.document_create(fh=fh, name=PDF.name, collection=collection)
    for point, next_point in (("parse", "embed"), ("embed", "index"), ("index", "")):
        wait_until(lambda p=point: marker.exists() and marker.read_text() == p, timeout=120)
        marker.unlink()
        worker.kill()
        staged_at_kill[point] = (
            PendingChunk.objects.filter(document=document).exclude(embedding_model="").count()
        )
        assert Document.objects.get(id=document.id).status == "processing"
        time.sleep(STALE_S + 0.5)  # no heartbeat from a dead worker: the document goes stale
        pause = {"RAGAPP_TEST_PAUSE_AT": next_point} if next_point else {}
        worker = spawn_ingest_worker(
            QUEUE, **COMMON_ENV, **pause, RAGAPP_TEST_PAUSE_FILE=str(marker)
        )

    wait_until(lambda: Document.objects.get(id=document.id).is_final, timeout=180)
    document.refresh_from_db()
    assert (document.status, document.error) == ("ready", "")
    # Deliveries of the embed stage (the count restarts when parsing hands over): killed while
    # embedding, killed while publishing, finished.
    assert document.attempts == 3
    assert staged_at_kill["embed"] >= 4  # a batch was embedded before the kill and was kept
    chunks = list(Chunk.objects.filter(document=document).order_by("index"))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.text for c in chunks] == expected_chunk_texts()
    assert not PendingChunk.objects.filter(document=document).exists()
    assert set(document.stage_seconds) == {"parse", "chunk", "embed", "index"}
