"""Drift checks: profile new questions, compare the recent window with the baseline, and raise
or resolve one alert per metric."""

from __future__ import annotations

import logging
import math
from datetime import datetime

from django.utils import timezone

from agent.models import QuestionProfile
from agent.selectors_dashboard.drift import (
    DriftReport,
    drift_baseline_since,
    drift_report,
    questions_unprofiled,
)
from agent.services.alerts import alert_raise, alert_resolve
from ingestion.pipeline.language import language_detect
from retrieval.providers.registry import embedder
from retrieval.selectors import chunk_dense_search

logger = logging.getLogger(__name__)

PROFILE_BATCH = 64


def question_profiles_fill(*, since: datetime) -> int:
    """Embed every question asked since ``since`` that has no profile yet, with its nearest
    chunk's similarity and its language; returns how many were added. Each question is embedded
    once, so a check every few minutes only embeds what arrived in between."""
    model = embedder()
    added = 0
    while batch := list(questions_unprofiled(since=since).only("id", "text")[:PROFILE_BATCH]):
        vectors = model.embed_documents([m.text for m in batch])
        profiles = []
        for message, vector in zip(batch, vectors, strict=True):
            nearest = chunk_dense_search(vector, model=model.name, collection_ids=None, limit=1)
            profiles.append(
                QuestionProfile(
                    message=message,
                    embedding=vector,
                    embedding_model=model.name,
                    best_match=nearest[0][1] if nearest else 0.0,
                    language=language_detect(message.text),
                )
            )
        # Two checks running at once may profile the same question: the first one wins.
        QuestionProfile.objects.bulk_create(profiles, ignore_conflicts=True)
        added += len(profiles)
    return added


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def drift_check(*, now: datetime | None = None) -> DriftReport:
    """Profile new questions, then for each drift metric raise ``drift.<metric>`` when it
    crosses its threshold (stored and posted to the webhook once while open) and resolve it
    when the metric is back under. A metric without enough data in either window is left as
    it is: too few questions say nothing either way."""
    now = now or timezone.now()
    profiled = question_profiles_fill(since=drift_baseline_since(now))
    report = drift_report(now=now)
    for figure in report.figures:
        kind = f"drift.{figure.metric}"
        if figure.crossed:
            alert_raise(
                kind=kind,
                key=report.key,
                message=figure.message,
                details={
                    "metric": figure.metric,
                    "recent": _finite(figure.recent),
                    "baseline": _finite(figure.baseline),
                    # From a zero baseline any rise is infinite; JSON has no Infinity.
                    "change": _finite(figure.change),
                    "threshold": figure.threshold,
                    "window": report.key,
                    "recent_since": report.recent_since.isoformat(),
                    "baseline_since": report.baseline_since.isoformat(),
                },
            )
        elif figure.enough_data:
            alert_resolve(kind=kind, key=report.key)
    logger.info(
        "drift checked",
        extra={
            "window": report.key,
            "profiled": profiled,
            "crossed": [f.metric for f in report.figures if f.crossed],
        },
    )
    return report
