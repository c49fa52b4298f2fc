"""Celery entry points for ingestion, and the sweeper every worker runs.

Why the sweeper lives in the worker: the embedded default broker (kombu's SQLAlchemy transport)
never redelivers a message whose worker was SIGKILLed, and `make run` starts no Celery beat. So
recovery comes from the database: each worker starts a daemon thread at `worker_ready` that
calls `document_sweep` every `RAGAPP_INGEST_SWEEP_EVERY_S` (and once at start, which also
re-embeds chunks of a previous model). Several workers sweeping at once is safe: the re-queue
is a conditional UPDATE. `manage.py ingest_sweep` does the same once, for cron.
"""

from __future__ import annotations

import logging
import random
import threading

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from ingestion import services

logger = logging.getLogger(__name__)


def _backoff(retries: int) -> float:
    """Exponential backoff with full jitter: up to 5, 10, 20 ... s, capped at 5 minutes."""
    return random.uniform(1, min(300, 5 * 2**retries))


@shared_task(
    bind=True,
    name="ingestion.process",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3600,
    time_limit=3700,
)
def process_document(self, document_id: str) -> None:  # type: ignore[no-untyped-def]
    try:
        services.document_process(document_id)
    except (services.TransientIngestError, DatabaseError) as exc:
        if self.request.retries >= settings.RAGAPP_INGEST_RETRIES:
            services.document_fail(document_id, f"gave up after retries: {exc}"[:300])
            return
        logger.warning("ingestion will retry", extra={"document": document_id, "error": str(exc)})
        try:
            services.document_release(document_id)
        except DatabaseError:
            pass  # the sweeper re-queues it if the database stays away
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
    except Exception as exc:  # task boundary: record the failure on the document, never lose it
        logger.exception("ingestion crashed", extra={"document": document_id})
        services.document_fail(
            document_id, f"internal error while ingesting ({type(exc).__name__})"
        )


@shared_task(name="ingestion.reembed", acks_late=True, reject_on_worker_lost=True)
def reembed_chunks() -> None:
    services.chunk_reembed_stale()


@shared_task(name="ingestion.sweep")
def sweep_documents() -> None:
    services.document_sweep()


def _sweep_forever(every_s: float, stop: threading.Event) -> None:
    first = True
    while not stop.is_set():
        try:
            services.document_sweep()
            if first and services.chunk_models_stale():
                reembed_chunks.apply_async(queue=settings.RAGAPP_INGEST_QUEUE)
            first = False
        except Exception:  # a sweep failing (database restarting) must not end the thread
            logger.exception("ingestion sweep failed")
        finally:
            close_old_connections()
        stop.wait(every_s)


@worker_ready.connect
def _start_sweeper(sender: object = None, **kwargs: object) -> None:
    every_s = settings.RAGAPP_INGEST_SWEEP_EVERY_S
    if every_s <= 0:
        return
    thread = threading.Thread(
        target=_sweep_forever,
        args=(every_s, threading.Event()),
        name="ingestion-sweeper",
        daemon=True,
    )
    thread.start()
