"""Reads behind the operations dashboard (``/ops/dashboard/``): cost, quality, reliability and
input drift, aggregated in SQL. ``dashboard_get`` assembles one page's worth."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from agent.models import Alert
from agent.selectors import usage_rollup
from agent.selectors_dashboard import charts
from agent.selectors_dashboard.common import day_range
from agent.selectors_dashboard.cost import (
    budget_usage,
    cache_savings_daily,
    cost_daily_by_model,
    cost_per_answer_daily,
    cost_totals,
)
from agent.selectors_dashboard.drift import drift_report, no_match_daily
from agent.selectors_dashboard.quality import quality_by_prompt, quality_daily
from agent.selectors_dashboard.reliability import (
    breaker_list,
    ingestion_failures,
    latency_daily,
    provider_daily,
    provider_errors,
)

__all__ = ["alert_list_open", "dashboard_get"]


def alert_list_open(*, limit: int = 50) -> list[Alert]:
    """Alerts nobody resolved yet, newest first."""
    return list(Alert.objects.filter(resolved_at__isnull=True).order_by("-created_at")[:limit])


def dashboard_get(*, days: int, now: datetime | None = None) -> dict[str, Any]:
    """Every figure, table and chart of the dashboard over the last ``days`` days."""
    now = now or timezone.now()
    since = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days - 1
    )
    labels = [d.isoformat() for d in day_range(since, now)]
    by_model = cost_daily_by_model(since=since)
    tokens = [
        {
            "day": d,
            "input_tokens": sum(r["input_tokens"] for r in by_model if r["day"] == d),
            "output_tokens": sum(r["output_tokens"] for r in by_model if r["day"] == d),
        }
        for d in day_range(since, now)
    ]
    quality = quality_daily(since=since)
    prompts = quality_by_prompt(since=since)
    providers = provider_daily(since=since)
    failures = ingestion_failures(since=since)
    report = drift_report(now=now)
    chart_data = {
        "cost_by_model": charts.per_model(by_model, labels, field="cost_usd", fmt="usd"),
        "tokens": charts.series(
            tokens,
            {"input_tokens": "tokens in", "output_tokens": "tokens out"},
            kind="bar",
            fmt="count",
            stacked=True,
        ),
        "cost_per_answer": charts.series(
            cost_per_answer_daily(since=since),
            {"cost_per_answer": "USD per answered question"},
            kind="line",
            fmt="usd",
        ),
        "cache_savings": charts.series(
            cache_savings_daily(since=since),
            {"saved_usd": "USD saved by cache hits"},
            kind="bar",
            fmt="usd",
        ),
        "outcomes": charts.series(
            quality,
            {"answered": "answered", "escalated": "escalated", "refused": "refused"},
            kind="bar",
            fmt="count",
            stacked=True,
        ),
        "quality_rates": charts.series(
            quality,
            {
                "thumbs_up_rate": "thumbs-up rate",
                "escalation_rate": "escalation rate",
                "refusal_rate": "refusal rate",
            },
            kind="line",
            fmt="percent",
        ),
        "citation_failures": charts.series(
            quality,
            {"citation_failures": "claims removed by the citation check"},
            kind="bar",
            fmt="count",
        ),
        "answer_length": charts.series(
            quality, {"answer_chars": "mean answered length"}, kind="line", fmt="chars"
        ),
        "by_prompt": charts.categories(
            prompts,
            label="prompt",
            fields={
                "thumbs_up_rate": "thumbs-up rate",
                "escalation_rate": "escalation rate",
                "refusal_rate": "refusal rate",
            },
            fmt="percent",
        ),
        "latency": charts.series(
            latency_daily(since=since),
            {"p50_ms": "p50", "p95_ms": "p95"},
            kind="line",
            fmt="ms",
        ),
        "provider_rates": charts.series(
            providers,
            {"error_rate": "provider error rate", "fallback_rate": "fallback rate"},
            kind="line",
            fmt="percent",
        ),
        "breaker_skips": charts.series(
            providers,
            {"breaker_skips": "turns that skipped an open breaker"},
            kind="bar",
            fmt="count",
        ),
        "ingestion_failures": charts.categories(
            failures, label="reason", fields={"count": "failed documents"}, fmt="count"
        ),
        "no_match": charts.series(
            no_match_daily(since=since, below=settings.RAGAPP_DRIFT_NO_MATCH_BELOW),
            {"no_match_share": "questions with no good match"},
            kind="line",
            fmt="percent",
        ),
        "languages": charts.language_windows(report.recent.languages, report.baseline.languages),
    }
    return {
        "days": days,
        "since": since,
        "now": now,
        "alerts": alert_list_open(),
        "totals": cost_totals(since=since),
        "top_users": usage_rollup(by="user", since=since)[:10],
        "top_conversations": usage_rollup(by="conversation", since=since)[:10],
        "budgets": budget_usage(now=now),
        "prompts": prompts,
        "provider_errors": provider_errors(since=since),
        "breakers": breaker_list(),
        "ingestion_failures": failures,
        "drift": report,
        "charts": chart_data,
    }
