"""Celery entry points of the agent app: thin wrappers over services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from agent.services.drift import drift_check as drift_check_service
from agent.services.prompts import prompt_canary_check


@shared_task(
    name="agent.prompt_canary_check",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=120,
    time_limit=150,
)
def canary_check(prompt_id: str = "") -> dict[str, Any]:
    """Roll the canary back when it is worse than production (idempotent: a rolled-back canary
    has no traffic, so a repeat finds it ``off``)."""
    verdict = prompt_canary_check(prompt_id=prompt_id)
    return {"status": verdict.status, "prompt_id": verdict.prompt_id, "reasons": verdict.reasons}


@shared_task(
    name="agent.drift_check",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=900,  # the first run embeds every question of the baseline window
    time_limit=960,
)
def drift_check() -> list[str]:
    """Compare the recent window with the baseline and raise or resolve drift alerts; returns
    the metrics that crossed their thresholds (idempotent: an open alert is not raised again)."""
    report = drift_check_service()
    return [f.metric for f in report.figures if f.crossed]
