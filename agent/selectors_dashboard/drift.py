"""Input-drift reads over stored question profiles, and the figures of a window of traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from pgvector.django import VectorField

from agent.models import Message, QuestionProfile, UsageRecord
from agent.pipeline.drift import DriftFigure, Thresholds, WindowStats, drift_compare
from agent.selectors_dashboard.common import ANSWER_ROUTES, answers, by_day, day_range, share
from agent.selectors_dashboard.reliability import latency_p95


def questions_unprofiled(*, since: datetime) -> QuerySet[Message]:
    """Users' questions asked since ``since`` that have no profile yet, oldest first."""
    return Message.objects.filter(
        role=Message.Role.USER, created_at__gte=since, profile__isnull=True
    ).order_by("created_at", "id")


def _profiles(since: datetime, until: datetime | None = None) -> QuerySet[QuestionProfile]:
    qs = QuestionProfile.objects.filter(message__created_at__gte=since)
    return qs.filter(message__created_at__lt=until) if until is not None else qs


def language_mix(*, since: datetime, until: datetime | None = None) -> dict[str, int]:
    """Profiled questions per language, most frequent first."""
    rows = (
        _profiles(since, until)
        .values("language")
        .annotate(count=Count("message_id"))
        .order_by("-count", "language")
    )
    return {row["language"]: row["count"] for row in rows}


def no_match_daily(*, since: datetime, below: float) -> list[dict[str, Any]]:
    """Per day: profiled questions and the share whose nearest chunk is below ``below``."""
    rows = (
        _profiles(since)
        .annotate(day=TruncDate("message__created_at"))
        .values("day")
        .annotate(
            questions=Count("message_id"), no_match=Count("message_id", Q(best_match__lt=below))
        )
    )
    return [
        {**row, "no_match_share": share(row["no_match"], row["questions"])}
        for row in by_day(rows, day_range(since), questions=0, no_match=0)
    ]


def drift_window_stats(*, since: datetime, until: datetime, no_match_below: float) -> WindowStats:
    """Everything the drift comparison needs about the window [since, until)."""
    outcomes = answers(since=since, until=until).aggregate(
        answers=Count("id"),
        answered=Count("id", filter=Q(decision=Message.Decision.ANSWERED)),
        refused=Count("id", filter=Q(decision=Message.Decision.REFUSED)),
    )
    spent = UsageRecord.objects.filter(
        ANSWER_ROUTES, created_at__gte=since, created_at__lt=until
    ).aggregate(cost=Coalesce(Sum("cost_usd"), Decimal(0)))["cost"]
    profiles = _profiles(since, until).aggregate(
        questions=Count("message_id"),
        no_match=Count("message_id", filter=Q(best_match__lt=no_match_below)),
        centroid=Avg("embedding", output_field=VectorField()),  # pgvector's avg(vector)
    )
    centroid = profiles["centroid"]
    return WindowStats(
        answers=outcomes["answers"],
        answered=outcomes["answered"],
        refused=outcomes["refused"],
        answer_cost_usd=float(spent),
        p95_latency_ms=latency_p95(since=since, until=until),
        questions=profiles["questions"],
        no_match=profiles["no_match"],
        centroid=[float(x) for x in centroid] if centroid is not None else None,
        languages=language_mix(since=since, until=until),
    )


def drift_thresholds() -> Thresholds:
    """The alert thresholds from settings."""
    return Thresholds(
        cost_per_answer_rise=settings.RAGAPP_ALERT_COST_PER_ANSWER_RISE,
        refusal_rate_factor=settings.RAGAPP_ALERT_REFUSAL_RATE_FACTOR,
        p95_rise=settings.RAGAPP_ALERT_P95_RISE,
        centroid_distance=settings.RAGAPP_ALERT_CENTROID_DISTANCE,
        no_match_rise=settings.RAGAPP_ALERT_NO_MATCH_RISE,
        language_shift=settings.RAGAPP_ALERT_LANGUAGE_SHIFT,
        min_sample=settings.RAGAPP_DRIFT_MIN_SAMPLE,
    )


@dataclass(frozen=True)
class DriftReport:
    """The two windows (``baseline_since`` <= baseline < ``recent_since`` <= recent < ``now``),
    their figures, and each metric compared."""

    key: str  # names the windows, e.g. "24h-vs-7d": the alert key
    now: datetime
    recent_since: datetime
    baseline_since: datetime
    recent: WindowStats
    baseline: WindowStats
    figures: list[DriftFigure]


def drift_baseline_since(now: datetime) -> datetime:
    """Where the baseline window starts: the questions from here on are the ones compared."""
    return now - timedelta(
        hours=settings.RAGAPP_DRIFT_WINDOW_HOURS, days=settings.RAGAPP_DRIFT_BASELINE_DAYS
    )


def drift_report(*, now: datetime | None = None) -> DriftReport:
    """The recent window (``RAGAPP_DRIFT_WINDOW_HOURS``) against the days before it
    (``RAGAPP_DRIFT_BASELINE_DAYS``), from stored answers, usage and question profiles."""
    now = now or timezone.now()
    hours, days = settings.RAGAPP_DRIFT_WINDOW_HOURS, settings.RAGAPP_DRIFT_BASELINE_DAYS
    recent_since = now - timedelta(hours=hours)
    baseline_since = drift_baseline_since(now)
    below = settings.RAGAPP_DRIFT_NO_MATCH_BELOW
    recent = drift_window_stats(since=recent_since, until=now, no_match_below=below)
    baseline = drift_window_stats(since=baseline_since, until=recent_since, no_match_below=below)
    return DriftReport(
        key=f"{hours}h-vs-{days}d",
        now=now,
        recent_since=recent_since,
        baseline_since=baseline_since,
        recent=recent,
        baseline=baseline,
        figures=drift_compare(recent, baseline, drift_thresholds()),
    )
