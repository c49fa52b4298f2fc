"""Celery entry points of the project-wide parts (traces)."""

from __future__ import annotations

from celery import shared_task

from ragapp.traces import span_cleanup


@shared_task(name="ragapp.span_cleanup", acks_late=True, soft_time_limit=600, time_limit=660)
def spans_cleanup() -> int:
    """Delete stored spans past ``RAGAPP_TRACE_RETENTION_DAYS`` (idempotent)."""
    return span_cleanup()
