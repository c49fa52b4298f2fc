from __future__ import annotations

import logging

from celery import shared_task

from ingestion import services

logger = logging.getLogger(__name__)


@shared_task(
    name="ingestion.process",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=1800,
    time_limit=1900,
)
def process_document(document_id: str) -> None:
    try:
        services.document_process(document_id)
    except Exception as exc:  # task boundary: record the failure on the document, never lose it
        logger.exception("ingestion crashed", extra={"document": document_id})
        services.document_fail(
            document_id, f"internal error while ingesting ({type(exc).__name__})"
        )
