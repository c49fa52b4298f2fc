"""The dashboard's SQL aggregates over rows with known values."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from agent.models import Feedback, GuardrailEvent
from agent.selectors_dashboard import dashboard_get
from agent.selectors_dashboard.cost import (
    budget_usage,
    cache_savings_daily,
    cost_daily_by_model,
    cost_per_answer_daily,
    cost_totals,
)
from agent.selectors_dashboard.drift import drift_report, drift_window_stats, no_match_daily
from agent.selectors_dashboard.quality import quality_by_prompt, quality_daily
from agent.selectors_dashboard.reliability import (
    ingestion_failures,
    latency_daily,
    provider_daily,
    provider_errors,
)
from ingestion.models import Collection, Document
from tests.support.dashboard_data import profile, turn, usage

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def today():  # type: ignore[no-untyped-def]
    """The start of today (UTC): rows at today + a few seconds are today and in the past."""
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def _row(rows, day):  # type: ignore[no-untyped-def]
    return next(r for r in rows if r["day"] == day.date())


def test_cost_is_summed_per_day_and_model_with_tokens(alice, bob, today):
    yesterday = today - timedelta(hours=12)
    usage(alice, yesterday, cost="0.002", model="gpt-4o-mini", input_tokens=100, output_tokens=10)
    usage(bob, yesterday, cost="0.003", model="gpt-4o-mini", input_tokens=50, output_tokens=5)
    usage(alice, today, cost="0.010", model="gpt-4o", input_tokens=400, output_tokens=40)
    usage(alice, today - timedelta(days=40), cost="9", model="gpt-4o")  # outside the window

    rows = cost_daily_by_model(since=today - timedelta(days=2))

    assert [(r["day"], r["model"], r["calls"], r["cost_usd"]) for r in rows] == [
        (yesterday.date(), "gpt-4o-mini", 2, pytest.approx(0.005)),
        (today.date(), "gpt-4o", 1, pytest.approx(0.010)),
    ]
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (150, 15)


def test_cost_per_answered_question_counts_every_answering_call_but_only_answered_turns(
    alice, today
):
    turn(alice, today, decision="answered", cost="0.002")
    turn(alice, today, decision="answered", cost="0.002")
    turn(alice, today, decision="refused", cost="0.002")  # still paid for
    usage(alice, today, cost="1.0", route="eval.judge")  # not an answer

    day = _row(cost_per_answer_daily(since=today), today)
    totals = cost_totals(since=today)

    assert (day["answered"], day["answer_cost_usd"]) == (2, pytest.approx(0.006))
    assert day["cost_per_answer"] == pytest.approx(0.003)
    assert totals["cost_per_answer"] == pytest.approx(0.003)
    assert totals["cost_usd"] == pytest.approx(1.006)


def test_cache_savings_add_up_what_the_cached_answers_first_cost(alice, today):
    turn(alice, today, cache="exact", trace={"saved_usd": 0.004})
    turn(alice, today, cache="semantic", trace={"saved_usd": 0.006})
    turn(alice, today, cache="", trace={"saved_usd": 5.0})  # not a hit: ignored

    day = _row(cache_savings_daily(since=today), today)

    assert (day["exact"], day["semantic"]) == (1, 1)
    assert day["saved_usd"] == pytest.approx(0.010)


def test_budget_usage_is_todays_spend_against_the_daily_budget(settings, alice, bob, today):
    settings.RAGAPP_BUDGET_USER_DAY_USD = 0.02
    settings.RAGAPP_BUDGET_USER_DAY_TOKENS = 0  # no token limit
    usage(alice, today, cost="0.005", input_tokens=300, output_tokens=100)
    usage(bob, today, cost="0.001")
    usage(bob, today - timedelta(hours=2), cost="0.5")  # yesterday

    rows = budget_usage()["user_day"]["rows"]

    assert [(r["username"], r["tokens"]) for r in rows] == [("alice", 400), ("bob", 120)]
    assert rows[0]["usd_used"] == pytest.approx(0.25)
    assert rows[0]["tokens_used"] is None


def test_quality_rates_and_answer_length_per_day_and_per_prompt_version(alice, bob, today):
    a1 = turn(alice, today, decision="answered", text="x" * 100, prompt_version="1")
    a2 = turn(
        alice,
        today,
        decision="answered",
        text="x" * 300,
        prompt_version="2",
        trace={"citation_failures": 2},
    )
    turn(alice, today, decision="escalated", text="a person will follow up", prompt_version="2")
    refused = turn(alice, today, decision="refused", text="not in the docs", prompt_version="2")
    Feedback.objects.create(message=a1, user=alice, rating=1)
    Feedback.objects.create(message=a1, user=bob, rating=1)
    Feedback.objects.create(message=refused, user=alice, rating=-1)
    Feedback.objects.create(message=a2, user=alice, rating=-1)
    for rule in ("invalid_citation", "unsupported_claim", "link_removed"):
        GuardrailEvent.objects.create(stage="output", rule=rule, action="removed")

    day = _row(quality_daily(since=today), today)
    prompts = {p["prompt"]: p for p in quality_by_prompt(since=today)}

    assert (day["answers"], day["answered"], day["escalated"], day["refused"]) == (4, 2, 1, 1)
    assert (day["thumbs_up"], day["thumbs_down"], day["thumbs_up_rate"]) == (2, 2, 0.5)
    assert (day["escalation_rate"], day["refusal_rate"]) == (0.25, 0.25)
    assert day["answer_chars"] == pytest.approx(200)  # answered ones only
    assert day["citation_failures"] == 2
    assert list(prompts) == ["grounded_answer@2", "grounded_answer@1"]
    v1, v2 = prompts["grounded_answer@1"], prompts["grounded_answer@2"]
    assert (v1["thumbs_up_rate"], v1["refusal_rate"]) == (1.0, 0.0)
    assert (v1["citation_failed_answers"], v2["citation_failed_answers"]) == (0, 1)
    assert (v2["answers"], v2["thumbs_up_rate"], v2["refusal_rate"]) == (
        3,
        0.0,
        pytest.approx(1 / 3),
    )


def test_latency_percentiles_match_numpys_linear_interpolation(alice, today):
    latencies = [120, 80, 950, 300, 310, 45, 2000, 640, 500, 220, 90]
    for ms in latencies:
        turn(alice, today, latency_ms=ms)

    day = _row(latency_daily(since=today), today)

    assert day["p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert day["p95_ms"] == pytest.approx(np.percentile(latencies, 95))
    assert day["p95_ms"] == pytest.approx(1475.0)


def test_provider_error_fallback_and_breaker_rates(alice, today):
    usage(alice, today, cost="0", succeeded=False, error_code="rate_limited")
    usage(alice, today, cost="0", succeeded=False, error_code="rate_limited")
    usage(alice, today, cost="0", succeeded=False, error_code="timeout")
    usage(alice, today, cost="0.001")
    usage(alice, today, cost="0", provider="extractive", model="extractive")  # not a provider
    turn(alice, today, degraded=True, trace={"skipped": ["openai/gpt-4o-mini: circuit open"]})
    turn(alice, today, degraded=True, trace={"skipped": ["openai/gpt-4o: attempt cap"]})
    turn(alice, today)
    turn(alice, today, cache="exact", degraded=True)  # cache hits generate nothing

    day = _row(provider_daily(since=today), today)
    errors = provider_errors(since=today)

    assert (day["calls"], day["failed"], day["error_rate"]) == (4, 3, 0.75)
    assert (day["generated"], day["fallback"]) == (3, 2)
    assert day["fallback_rate"] == pytest.approx(2 / 3)
    assert day["breaker_skips"] == 1
    assert [(e["error_code"], e["count"]) for e in errors] == [("rate_limited", 2), ("timeout", 1)]


def test_ingestion_failures_are_grouped_by_the_reason_before_the_colon(today):
    collection = Collection.objects.create(slug="c", name="c")
    reasons = ["encrypted: a.pdf", "encrypted: b.pdf", "no extractable text", ""]
    for n, reason in enumerate(reasons):
        Document.objects.create(
            collection=collection,
            title=f"d{n}",
            file=f"documents/d{n}",
            original_name=f"d{n}",
            content_hash=f"h{n}",
            status="failed",
            error=reason,
        )
    Document.objects.create(
        collection=collection, title="ok", file="f", original_name="ok", content_hash="ok"
    )

    rows = ingestion_failures(since=today - timedelta(days=1))

    assert [(r["reason"], r["count"]) for r in rows] == [
        ("encrypted", 2),
        ("", 1),
        ("no extractable text", 1),
    ]


def test_drift_figures_from_stored_profiles(settings, alice, today):
    settings.RAGAPP_DRIFT_NO_MATCH_BELOW = 0.35
    now = timezone.now()
    recent, baseline = now - timedelta(hours=1), now - timedelta(days=3)
    for best in (0.9, 0.2, 0.1, 0.8):
        profile(alice, recent, vector=[0.0, 1.0], best_match=best, language="de")
    for best in (0.9, 0.9, 0.9, 0.2):
        profile(alice, baseline, vector=[1.0, 0.0], best_match=best, language="en")

    stats = drift_window_stats(since=now - timedelta(hours=24), until=now, no_match_below=0.35)
    report = drift_report(now=now)
    figures = {f.metric: f for f in report.figures}

    assert (stats.questions, stats.no_match, stats.languages) == (4, 2, {"de": 4})
    assert stats.centroid is not None and stats.centroid[:2] == pytest.approx([0.0, 1.0])
    assert figures["question_centroid"].change == pytest.approx(1.0)  # orthogonal centroids
    assert figures["no_match_share"].recent == 0.5
    assert figures["no_match_share"].change == pytest.approx(0.25)
    assert figures["language_mix"].change == pytest.approx(1.0)
    day = _row(no_match_daily(since=today - timedelta(days=3), below=0.35), recent)
    assert day["no_match_share"] == 0.5


def test_the_dashboard_assembles_every_chart_with_one_label_per_day(alice, today):
    turn(alice, today, cost="0.002")

    page = dashboard_get(days=7)

    assert set(page["charts"]) >= {"cost_by_model", "latency", "languages", "by_prompt"}
    for name in ("cost_by_model", "tokens", "outcomes", "latency", "no_match"):
        assert len(page["charts"][name]["labels"]) == 7, name
    assert page["charts"]["cost_by_model"]["datasets"][0]["label"] == "gpt-4o-mini"
    assert page["charts"]["cost_by_model"]["datasets"][0]["data"][-1] == pytest.approx(0.002)
