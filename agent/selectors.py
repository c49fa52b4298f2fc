from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from agent.models import Conversation, UsageRecord

ROLLUP_FIELDS = {
    "conversation": "conversation_id",
    "user": "user__username",
    "route": "route",
    "model": "model",
    "day": "day",
}


def conversation_list(*, user) -> QuerySet[Conversation]:  # type: ignore[no-untyped-def]
    return Conversation.objects.filter(user=user).order_by("-updated_at")[:100]


def usage_rollup(*, by: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and cost grouped by ``conversation``, ``user``, ``route``, ``model`` or
    ``day``; most expensive first."""
    field = ROLLUP_FIELDS[by]
    qs = UsageRecord.objects.all()
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if by == "day":
        qs = qs.annotate(day=TruncDate("created_at"))
    rows = (
        qs.values(field)
        .annotate(
            calls=Count("id"),
            failed=Count("id", filter=Q(succeeded=False)),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
            cost_usd=Coalesce(Sum("cost_usd"), Decimal(0)),
        )
        .order_by("-cost_usd", field)
    )
    return [
        {
            by: str(row[field]) if row[field] is not None else None,
            "calls": row["calls"],
            "failed": row["failed"],
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "cost_usd": float(row["cost_usd"]),
        }
        for row in rows
    ]
