"""The short chaos run: documents keep their promise while the worker is SIGKILLed.

The full run (200 documents, 20 kills, broker and database restarts, a poison document) is
``make bench-chaos``; this one uploads a few documents on the default broker and kills the worker
twice while it is processing: once the whole process group (a crashed container, nothing is
acknowledged or requeued) and once its pool process only (the main process notices). Every
document must end ``ready`` or ``failed`` with a reason, with no duplicate chunks.
"""

from __future__ import annotations

import io

import pytest

from bench.chaos.corpus import document_text
from bench.chaos.monkey import audit_documents
from bench.load.stack import celery_beat, celery_worker, database_url_of, process_env, wait_for
from ingestion import services
from ingestion.models import Document

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DOCUMENTS = 3
SETTLE_S = 90  # a restarted worker warms up for a few seconds to ~25 s on a busy machine


def _newly_processing(seen: set[str]) -> list[str]:
    """Documents a worker is processing now, apart from those a kill already left behind."""
    rows = Document.objects.filter(status=Document.Status.PROCESSING).values_list("id", flat=True)
    return [str(i) for i in rows if str(i) not in seen]


def test_every_document_ends_ready_or_failed_when_the_worker_is_killed_mid_task(settings):
    from django.db import connection

    # Queues of its own: the session's shared test worker must not take these documents.
    settings.RAGAPP_QUEUE_PARSE, settings.RAGAPP_QUEUE_EMBED = "chaos.parse", "chaos.embed"
    env = process_env(
        DATABASE_URL=database_url_of(connection.settings_dict),
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        RAGAPP_QUEUE_PARSE=settings.RAGAPP_QUEUE_PARSE,
        RAGAPP_QUEUE_EMBED=settings.RAGAPP_QUEUE_EMBED,
        # Beat's sweep re-queues a document stuck this long (production: 600 s), often.
        RAGAPP_INGEST_STALE_S="30",
        RAGAPP_INGEST_SWEEP_EVERY_S="3",
    )
    worker = celery_worker(env, settings.DATA_DIR / "chaos-worker.log", name="chaos")
    worker.start()
    # Beat on its own, as in production: killing the worker's pool must not stop the sweeps.
    schedule = settings.DATA_DIR / "chaos-beat-schedule"
    beat = celery_beat(env, settings.DATA_DIR / "chaos-beat.log", schedule).start()
    try:
        worker.wait_ready(timeout=120)
        collection = services.collection_get_or_create("chaos-short")
        ids = []
        for index in range(DOCUMENTS):
            name, text = document_text(index, seed=11)
            document, _ = services.document_create(
                fh=io.BytesIO(text.encode()), name=name, collection=collection
            )
            ids.append(str(document.id))

        caught: set[str] = set()
        for kill in ("group", "child"):
            busy = wait_for(lambda: _newly_processing(caught), timeout=120, interval=0.1)
            caught.update(busy)
            if kill == "group":
                worker.kill_group()
                worker.stop()
                worker.start()
            else:
                worker.kill_children()
            worker.wait_ready(timeout=120)

        def settled() -> bool:
            return (
                not Document.objects.filter(id__in=ids)
                .exclude(status__in=[Document.Status.READY, Document.Status.FAILED])
                .exists()
            )

        try:
            wait_for(settled, timeout=SETTLE_S, interval=0.5, what="every document final")
        except TimeoutError:
            pass  # the audit below says which documents are stuck, and where
        audit = audit_documents(ids)
    finally:
        worker.stop()
        beat.stop()

    assert worker.kills == ["group", "child"] and all(caught)
    assert audit["lost"] == 0, audit["lost_detail"]
    assert audit["failed_without_reason"] == []
    assert audit["duplicate_chunks"] == 0
    assert audit["index_gaps"] == [] and audit["ready_without_chunks"] == []
