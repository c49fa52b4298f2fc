"""Background upkeep: the stuck-document sweep and re-embedding after a model change."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from pgvector.django import VectorField

from ingestion.models import Chunk, Document
from ingestion.services.documents import document_enqueue, document_fail
from ingestion.services.processing import gave_up_reason, pause_for_tests

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    requeued: list[str]
    failed: list[str]


def document_sweep(*, stale_after_s: float | None = None) -> SweepResult:
    """Re-queue documents stuck in queued/processing with no progress for the stale period, to
    the task of the stage they are in; those already delivered `RAGAPP_INGEST_MAX_ATTEMPTS`
    times in that stage end failed instead."""
    stale_s = settings.RAGAPP_INGEST_STALE_S if stale_after_s is None else stale_after_s
    cutoff = timezone.now() - timedelta(seconds=stale_s)
    stuck = Document.objects.filter(
        status__in=[Document.Status.QUEUED, Document.Status.PROCESSING], updated_at__lt=cutoff
    )
    requeued: list[str] = []
    failed: list[str] = []
    for document in stuck:
        if document.attempts >= settings.RAGAPP_INGEST_MAX_ATTEMPTS:
            document_fail(str(document.id), gave_up_reason(document))
            failed.append(str(document.id))
            continue
        with transaction.atomic():
            # Conditional: a worker that just made progress keeps the document.
            taken = Document.objects.filter(id=document.id, updated_at__lt=cutoff).update(
                status=Document.Status.QUEUED, claim_token=None, updated_at=timezone.now()
            )
            if taken:
                document_enqueue(document_id=str(document.id), stage=document.stage)
                requeued.append(str(document.id))
    if requeued or failed:
        logger.warning("ingestion sweep", extra={"requeued": requeued, "failed": failed})
    return SweepResult(requeued=requeued, failed=failed)


# -- Re-embedding after a model change --------------------------------------------------------

# Claim a batch of chunks of another model. SKIP LOCKED: concurrent re-embedding tasks take
# different batches; a killed one's transaction rolls back and its rows are free again.
_CLAIM_SQL = """
SELECT id, text FROM ingestion_chunk WHERE embedding_model <> %s
ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
"""
# A re-embedded chunk also gets a new id: to the new model's side it is a new chunk, and the
# BM25 index of every process notices new chunks by the newest id (retrieval/selectors.py).
_REEMBED_SQL = """
UPDATE ingestion_chunk
SET id = nextval(pg_get_serial_sequence('ingestion_chunk', 'id')),
    embedding = %s::vector, embedding_model = %s
WHERE id = %s AND embedding_model <> %s
"""


@dataclass(frozen=True)
class ReembedResult:
    chunks: int
    more: bool  # chunks of another model are left (the time budget ran out first)


def chunk_models_stale() -> bool:
    """Whether any chunk was embedded by another model than the configured one."""
    from retrieval.providers.registry import embedder

    name = embedder().name
    # "<" or ">" rather than "<>": two range scans of the (embedding_model, id) index instead
    # of reading every chunk, when (as almost always) there is nothing to find.
    return Chunk.objects.filter(Q(embedding_model__lt=name) | Q(embedding_model__gt=name)).exists()


def chunk_reembed(*, budget_s: float | None = None, batch_size: int | None = None) -> ReembedResult:
    """Re-embed chunks whose `embedding_model` is not the configured embedder's, batch by batch,
    each batch in its own transaction, until none is left or ``budget_s`` is spent.

    Idempotent and resumable: a batch is claimed with row locks, written with a conditional
    UPDATE and committed whole, so a kill loses at most the batch in flight, which the next run
    takes again. Retrieval filters by model, so it never mixes the two sets meanwhile.
    """
    from retrieval.providers.registry import embedder

    emb = embedder()
    size = batch_size or settings.RAGAPP_EMBEDDING_BATCH
    vector_field = VectorField()
    started = time.monotonic()
    total = 0
    while True:
        if budget_s is not None and time.monotonic() - started >= budget_s:
            more = True
            break
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_CLAIM_SQL, [emb.name, size])
            rows = cursor.fetchall()
            if not rows:
                more = False
                break
            vectors = emb.embed_documents([text for _, text in rows])
            cursor.executemany(
                _REEMBED_SQL,
                [
                    (vector_field.get_prep_value(vector), emb.name, chunk_id, emb.name)
                    for (chunk_id, _), vector in zip(rows, vectors, strict=True)
                ],
            )
        total += len(rows)
        pause_for_tests("reembed", done=total)
    if total:
        logger.info("chunks re-embedded", extra={"chunks": total, "model": emb.name, "more": more})
    return ReembedResult(chunks=total, more=more)


def chunk_reembed_enqueue() -> None:
    """Queue a re-embedding task on the embed queue (at worker start, by the sweep, and by a
    re-embedding task whose budget ran out)."""
    from ingestion.tasks import reembed_chunks

    reembed_chunks.apply_async(queue=settings.RAGAPP_QUEUE_EMBED)
