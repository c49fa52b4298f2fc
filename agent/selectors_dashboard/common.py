"""Pieces shared by the dashboard selectors: a SQL percentile and day-by-day series."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Aggregate, FloatField, Q, QuerySet
from django.utils import timezone

from agent.models import Message

ANSWER_ROUTES = Q(route="answer") | Q(route__startswith="answer.")


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont(p) WITHIN GROUP (ORDER BY expr)`` (continuous, like
    numpy's default linear interpolation)."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, percentile: float, **extra: Any) -> None:
        # A float formatted into the SQL: never user input, and safe as a literal.
        super().__init__(expression, percentile=float(percentile), **extra)


def day_range(since: datetime, until: datetime | None = None) -> list[date]:
    """Every UTC day from ``since`` to ``until`` (now), so charts show quiet days as zero."""
    start = timezone.localdate(since)
    end = timezone.localdate(until or timezone.now())
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def by_day(rows: Iterable[dict[str, Any]], days: list[date], **zero: Any) -> list[dict[str, Any]]:
    """One row per day of ``days`` (rows keyed by ``day``), filling quiet days with ``zero``."""
    found = {row["day"]: row for row in rows}
    return [{**zero, **found.get(day, {}), "day": day} for day in days]


def answers(*, since: datetime, until: datetime | None = None) -> QuerySet[Message]:
    """Assistant messages (one per asked question) created in the window."""
    qs = Message.objects.filter(role=Message.Role.ASSISTANT, created_at__gte=since)
    return qs.filter(created_at__lt=until) if until is not None else qs


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None
