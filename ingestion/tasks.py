"""Celery entry points for ingestion: one task per stage, each on its own queue, plus the
periodic sweep and re-embedding.

- `ingestion.parse` (queue `RAGAPP_QUEUE_PARSE`) and `ingestion.embed` (`RAGAPP_QUEUE_EMBED`):
  the two stages of a document, so OCR-heavy parsing never starves embedding; the parse task
  queues the embed task when it commits the drafts.
- `ingestion.sweep`: scheduled by Celery beat every `RAGAPP_INGEST_SWEEP_EVERY_S`
  (`RAGAPP_PERIODIC_TASKS`): re-queues stuck documents and, when chunks of another embedding
  model exist, queues `ingestion.reembed`.
- Every worker also sweeps once when it starts (in a thread, not to delay start-up): the
  embedded default broker (kombu's SQLAlchemy transport) never redelivers a message whose
  worker was SIGKILLed, so a restarted worker recovers what its predecessor left at once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from celery import Task, shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from ingestion import services

logger = logging.getLogger(__name__)

_STAGE_TASK = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": 3600,
    "time_limit": 3700,
}


def _backoff(retries: int) -> float:
    """Exponential backoff with full jitter: up to 5, 10, 20 ... s, capped at 5 minutes."""
    return random.uniform(1, min(300, 5 * 2**retries))


def _run_stage(task: Task, stage: Callable[[str], bool], document_id: str) -> None:
    try:
        stage(document_id)
    except (services.TransientIngestError, DatabaseError) as exc:
        if task.request.retries >= settings.RAGAPP_INGEST_RETRIES:
            services.document_fail(document_id, f"gave up after retries: {exc}"[:300])
            return
        logger.warning("ingestion will retry", extra={"document": document_id, "error": str(exc)})
        try:
            services.document_release(document_id)
        except DatabaseError:
            pass  # the sweeper re-queues it if the database stays away
        raise task.retry(exc=exc, countdown=_backoff(task.request.retries)) from exc
    except Exception as exc:  # task boundary: record the failure on the document, never lose it
        logger.exception("ingestion crashed", extra={"document": document_id})
        services.document_fail(
            document_id, f"internal error while ingesting ({type(exc).__name__})"
        )


@shared_task(name="ingestion.parse", **_STAGE_TASK)
def parse_document(self: Task, document_id: str) -> None:
    _run_stage(self, services.document_parse, document_id)


@shared_task(name="ingestion.embed", **_STAGE_TASK)
def embed_document(self: Task, document_id: str) -> None:
    _run_stage(self, services.document_embed, document_id)


@shared_task(
    name="ingestion.reembed",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=900,
    time_limit=960,
)
def reembed_chunks() -> None:
    # A bounded run, then a fresh task: documents queued meanwhile get their turn on the queue.
    if services.chunk_reembed(budget_s=600).more:
        services.chunk_reembed_enqueue()


@shared_task(name="ingestion.sweep")
def sweep_documents() -> None:
    services.document_sweep()
    if services.chunk_models_stale():
        services.chunk_reembed_enqueue()


def _sweep_at_start() -> None:
    try:
        sweep_documents()
    except Exception:  # a thread boundary: the database may still be starting
        logger.exception("ingestion start-up sweep failed")
    finally:
        close_old_connections()


@worker_ready.connect
def _start_up_sweep(sender: object = None, **kwargs: object) -> None:
    if settings.RAGAPP_INGEST_SWEEP_EVERY_S <= 0:
        return
    threading.Thread(target=_sweep_at_start, name="ingestion-sweep", daemon=True).start()
