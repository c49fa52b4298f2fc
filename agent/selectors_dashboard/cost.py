"""Cost reads: spend per day and model, per answered question, budgets and cache savings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, F, FloatField, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, TruncDate
from django.utils import timezone

from agent.models import Conversation, Message, UsageRecord
from agent.selectors_dashboard.common import ANSWER_ROUTES, answers, by_day, day_range, share


def cost_daily_by_model(*, since: datetime) -> list[dict[str, Any]]:
    """Calls, tokens in and out, and USD per (day, model), oldest day first."""
    rows = (
        UsageRecord.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(
            calls=Count("id"),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
            cost_usd=Coalesce(Sum("cost_usd"), Decimal(0)),
        )
        .order_by("day", "model")
    )
    return [{**row, "cost_usd": float(row["cost_usd"])} for row in rows]


def cost_per_answer_daily(*, since: datetime) -> list[dict[str, Any]]:
    """Per day: answered questions, what every answering call cost (answered, escalated or
    refused alike: all of it is the price of the answers), and their ratio."""
    spend = (
        UsageRecord.objects.filter(ANSWER_ROUTES, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(answer_cost_usd=Sum("cost_usd"))
    )
    answered = (
        answers(since=since)
        .filter(decision=Message.Decision.ANSWERED)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(answered=Count("id"))
    )
    spent = {row["day"]: float(row["answer_cost_usd"]) for row in spend}
    counted = {row["day"]: row["answered"] for row in answered}
    return [
        {
            "day": day,
            "answered": counted.get(day, 0),
            "answer_cost_usd": spent.get(day, 0.0),
            "cost_per_answer": share(spent.get(day, 0.0), counted.get(day, 0)),
        }
        for day in day_range(since)
    ]


def cache_savings_daily(*, since: datetime) -> list[dict[str, Any]]:
    """Per day: exact and semantic cache hits and what the cached answers had cost when first
    generated (the spend each hit avoided, stored on the message as ``trace.saved_usd``)."""
    rows = (
        answers(since=since)
        .exclude(cache="")
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            exact=Count("id", filter=Q(cache="exact")),
            semantic=Count("id", filter=Q(cache="semantic")),
            saved_usd=Coalesce(Sum(Cast(KT("trace__saved_usd"), FloatField())), 0.0),
        )
    )
    return by_day(rows, day_range(since), exact=0, semantic=0, saved_usd=0.0)


def budget_usage(*, now: datetime | None = None, limit: int = 10) -> dict[str, Any]:
    """Today's biggest spenders against the per-user daily budget and the most expensive
    conversations against the per-conversation budget (a limit of 0 means none is set)."""
    now = now or timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    users = (
        UsageRecord.objects.filter(created_at__gte=today, user__isnull=False)
        .values(username=F("user__username"))
        .annotate(
            cost_usd=Coalesce(Sum("cost_usd"), Decimal(0)),
            tokens=Coalesce(Sum(F("input_tokens") + F("output_tokens")), 0),
        )
        .order_by("-cost_usd", "-tokens")[:limit]
    )
    conversations = (
        Conversation.objects.annotate(
            cost_usd=Coalesce(Sum("usage__cost_usd"), Decimal(0)),
            tokens=Coalesce(Sum(F("usage__input_tokens") + F("usage__output_tokens")), 0),
        )
        .filter(tokens__gt=0)
        .order_by("-cost_usd", "-tokens")
        .values("id", "title", "cost_usd", "tokens")[:limit]
    )
    user_usd, user_tokens = (
        settings.RAGAPP_BUDGET_USER_DAY_USD,
        settings.RAGAPP_BUDGET_USER_DAY_TOKENS,
    )
    conv_usd, conv_tokens = (
        settings.RAGAPP_BUDGET_CONVERSATION_USD,
        settings.RAGAPP_BUDGET_CONVERSATION_TOKENS,
    )
    return {
        "user_day": {
            "limit_usd": user_usd,
            "limit_tokens": user_tokens,
            "rows": [_budget_row(r, user_usd, user_tokens) for r in users],
        },
        "conversation": {
            "limit_usd": conv_usd,
            "limit_tokens": conv_tokens,
            "rows": [
                {**_budget_row(r, conv_usd, conv_tokens), "id": str(r["id"])} for r in conversations
            ],
        },
    }


def _budget_row(row: dict[str, Any], limit_usd: float, limit_tokens: int) -> dict[str, Any]:
    cost = float(row["cost_usd"])
    return {
        **row,
        "cost_usd": cost,
        "usd_used": share(cost, limit_usd),
        "tokens_used": share(row["tokens"], limit_tokens),
    }


def cost_totals(*, since: datetime) -> dict[str, Any]:
    """The window's headline figures: spend, calls, tokens, answered questions, savings."""
    usage = UsageRecord.objects.filter(created_at__gte=since).aggregate(
        calls=Count("id"),
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        # Not named cost_usd: an alias shadowing the field breaks the filtered sum below.
        spent_usd=Coalesce(Sum("cost_usd"), Decimal(0)),
        answer_cost_usd=Coalesce(Sum("cost_usd", filter=ANSWER_ROUTES), Decimal(0)),
    )
    answered = answers(since=since).filter(decision=Message.Decision.ANSWERED).count()
    saved = sum(row["saved_usd"] for row in cache_savings_daily(since=since))
    return {
        "calls": usage["calls"],
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "cost_usd": float(usage["spent_usd"]),
        "answered": answered,
        "cost_per_answer": share(float(usage["answer_cost_usd"]), answered),
        "saved_usd": saved,
    }
