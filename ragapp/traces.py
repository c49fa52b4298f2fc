"""Stored traces: the waterfall of one trace, and the retention clean-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from ragapp.models import Span

MIN_BAR_PCT = 0.3  # a 0.1 ms span still shows as a sliver


@dataclass(frozen=True)
class WaterfallRow:
    span: Span
    depth: int
    offset_pct: float  # where the bar starts, in % of the trace's duration
    width_pct: float
    offset_ms: float

    @property
    def indent(self) -> int:
        """Depth bucket for the CSS class that indents the name (the page's CSP forbids style
        attributes)."""
        return min(self.depth, 12)

    @property
    def attribute_items(self) -> list[tuple[str, Any]]:
        return sorted(self.span.attributes.items())


@dataclass(frozen=True)
class Waterfall:
    trace_id: str
    rows: list[WaterfallRow]
    duration_ms: float
    started_at: Any

    @property
    def errors(self) -> int:
        return sum(1 for r in self.rows if r.span.status == "error")


def trace_spans_list(*, trace_id: str) -> list[Span]:
    """The stored spans of one trace, earliest first."""
    return list(Span.objects.filter(trace_id=trace_id).order_by("started_at", "id"))


def waterfall_build(trace_id: str, spans: list[Span]) -> Waterfall:
    """Lay spans out as rows: each span under its parent (depth-first, children by start time),
    bars placed on the trace's time axis. A span whose parent is missing (not stored, e.g. the
    caller's) is shown as a root."""
    if not spans:
        return Waterfall(trace_id=trace_id, rows=[], duration_ms=0.0, started_at=None)
    start = min(s.started_at for s in spans)
    end = max(s.started_at + timedelta(milliseconds=s.duration_ms) for s in spans)
    total_ms = max((end - start).total_seconds() * 1000, 0.001)
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else ""
        children.setdefault(parent, []).append(s)
    rows: list[WaterfallRow] = []

    def walk(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda c: c.started_at):
            offset_ms = (s.started_at - start).total_seconds() * 1000
            offset = 100 * offset_ms / total_ms
            width = max(100 * s.duration_ms / total_ms, MIN_BAR_PCT)
            rows.append(
                WaterfallRow(
                    span=s,
                    depth=depth,
                    offset_pct=round(min(offset, 100 - MIN_BAR_PCT), 3),
                    width_pct=round(min(width, 100 - min(offset, 100 - MIN_BAR_PCT)), 3),
                    offset_ms=round(offset_ms, 2),
                )
            )
            walk(s.span_id, depth + 1)

    walk("", 0)
    return Waterfall(trace_id=trace_id, rows=rows, duration_ms=round(total_ms, 2), started_at=start)


def span_cleanup(*, older_than_days: int | None = None) -> int:
    """Delete stored spans older than ``RAGAPP_TRACE_RETENTION_DAYS``; returns how many.

    Meant to run periodically (e.g. daily from Celery beat)."""
    days = settings.RAGAPP_TRACE_RETENTION_DAYS if older_than_days is None else older_than_days
    deleted, _ = Span.objects.filter(started_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
