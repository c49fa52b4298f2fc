"""Usage and cost: one ``UsageRecord`` per provider call, priced from settings, rolled up per
conversation, user, route and day, and checked against the budgets before any paid call."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from agent.models import Conversation, UsageRecord
from agent.providers.protocols import Attempt, Prompt
from ragapp.errors import QuotaExceeded

logger = logging.getLogger(__name__)


def cost_usd(model: str, input_tokens: int, output_tokens: int, *, batch: bool = False) -> Decimal:
    """USD for a call from ``RAG_PRICES`` (per 1M tokens). A ``batch`` call (the batch lane) is
    priced with the model's ``"batch"`` multiplier from the table (e.g. 0.5), 1 when absent."""
    price = settings.RAG_PRICES.get(model)
    if price is None:
        logger.warning("no price for model; cost recorded as 0", extra={"model": model})
        return Decimal(0)
    total = (input_tokens * price["input"] + output_tokens * price["output"]) / 1_000_000
    multiplier = float(price.get("batch", 1.0)) if batch else 1.0
    return Decimal(str(round(total * multiplier, 6)))


def usage_record(
    attempts: list[Attempt],
    *,
    route: str,
    prompt: Prompt,
    conversation,
    user,  # type: ignore[no-untyped-def]
    batch: bool = False,
) -> list[UsageRecord]:
    """Store one record per provider call, successful or not (``batch``: at the batch price)."""
    return UsageRecord.objects.bulk_create(
        UsageRecord(
            provider=a.provider,
            model=a.model,
            route=route,
            input_tokens=a.usage.input_tokens,
            output_tokens=a.usage.output_tokens,
            tokens_estimated=a.usage.estimated,
            cost_usd=cost_usd(a.model, a.usage.input_tokens, a.usage.output_tokens, batch=batch),
            latency_ms=a.latency_ms,
            succeeded=not a.error_code,
            error_code=a.error_code,
            prompt_id=prompt.id,
            prompt_version=prompt.version,
            conversation=conversation,
            user=user,
        )
        for a in attempts
    )


def usage_summary(records: list[UsageRecord]) -> dict[str, Any]:
    """The ``usage`` object of an API answer."""
    return {
        "calls": len(records),
        "input_tokens": sum(r.input_tokens for r in records),
        "output_tokens": sum(r.output_tokens for r in records),
        "cost_usd": float(sum((r.cost_usd for r in records), Decimal(0))),
        "estimated": any(r.tokens_estimated for r in records),
    }


def _totals(qs) -> tuple[int, Decimal]:  # type: ignore[no-untyped-def]
    row = qs.aggregate(
        tokens=Coalesce(Sum("input_tokens"), 0) + Coalesce(Sum("output_tokens"), 0),
        cost=Coalesce(Sum("cost_usd"), Decimal(0)),
    )
    return int(row["tokens"]), Decimal(row["cost"])


def _day_start() -> datetime:
    return timezone.make_aware(datetime.combine(timezone.localdate(), time.min))


def budget_check(*, user, conversation: Conversation | None) -> None:  # type: ignore[no-untyped-def]
    """Raise ``QuotaExceeded`` (HTTP 429) when the conversation or the user's day is over budget.

    Called before any provider call; limits of 0 are off. Spending is what ``UsageRecord`` holds,
    so every process sees the same totals.
    """
    checks = []
    if conversation is not None and (
        settings.RAGAPP_BUDGET_CONVERSATION_TOKENS or settings.RAGAPP_BUDGET_CONVERSATION_USD
    ):
        tokens, cost = _totals(UsageRecord.objects.filter(conversation=conversation))
        checks += [
            ("conversation_tokens", tokens, settings.RAGAPP_BUDGET_CONVERSATION_TOKENS),
            ("conversation_usd", cost, settings.RAGAPP_BUDGET_CONVERSATION_USD),
        ]
    if settings.RAGAPP_BUDGET_USER_DAY_TOKENS or settings.RAGAPP_BUDGET_USER_DAY_USD:
        tokens, cost = _totals(UsageRecord.objects.filter(user=user, created_at__gte=_day_start()))
        checks += [
            ("user_day_tokens", tokens, settings.RAGAPP_BUDGET_USER_DAY_TOKENS),
            ("user_day_usd", cost, settings.RAGAPP_BUDGET_USER_DAY_USD),
        ]
    for name, used, limit in checks:
        if limit and used >= Decimal(str(limit)):
            scope = "this conversation" if name.startswith("conversation") else "today"
            resets = (
                None
                if name.startswith("conversation")
                else (_day_start() + timedelta(days=1)).isoformat()
            )
            raise QuotaExceeded(
                f"The usage limit for {scope} has been reached, so no new answer can be generated."
                + (
                    " Please start a new conversation."
                    if resets is None
                    else " Try again tomorrow."
                ),
                code=f"budget_{name}",
                extra={"budget": name, "used": float(used), "limit": limit, "resets_at": resets},
            )
