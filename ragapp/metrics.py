"""Prometheus metrics at ``/metrics`` (staff only).

Business metrics are read from the database at scrape time, so web and worker processes agree
and nothing is lost on restart. Request latency is measured in-process; with several gunicorn
workers set ``PROMETHEUS_MULTIPROC_DIR`` (``make run`` does) so every worker's samples count.
The README's operations section lists every metric.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request

REQUEST_LATENCY = Histogram(
    "ragapp_request_latency_seconds",
    "HTTP request latency by route",
    ["route", "method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Ingestion stage durations, seconds (a 400-page PDF embeds for minutes).
STAGE_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)
BREAKER_STATES = ("closed", "open", "half_open")

logger = logging.getLogger(__name__)
MetricFamily = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class DatabaseCollector(Collector):
    """Answers, provider attempts, tokens, cost, guardrail actions and ingestion, from the DB."""

    def collect(self) -> Iterator[MetricFamily]:
        yield from self._answers()
        yield from self._usage()
        yield from self._ingestion()
        yield from self._breakers()

    def _answers(self) -> Iterator[MetricFamily]:
        from agent.models import GuardrailEvent, Message

        answers = CounterMetricFamily(
            "ragapp_answers", "Answers by decision", labels=["decision", "degraded"]
        )
        rows = (
            Message.objects.filter(role=Message.Role.ASSISTANT)
            .values("decision", "degraded")
            .annotate(n=Count("id"))
        )
        for row in rows:
            answers.add_metric([row["decision"], str(row["degraded"]).lower()], row["n"])
        yield answers

        # Every answered question went through the cache lookup: the hit rate is hits / all.
        caches = CounterMetricFamily(
            "ragapp_answer_cache",
            "Answers by cache outcome (exact, semantic, miss)",
            labels=["cache"],
        )
        by_kind = dict(
            Message.objects.filter(role=Message.Role.ASSISTANT)
            .values_list("cache")
            .annotate(n=Count("id"))
            .values_list("cache", "n")
        )
        total = sum(by_kind.values())
        for kind in ("exact", "semantic"):
            caches.add_metric([kind], by_kind.get(kind, 0))
        caches.add_metric(["miss"], by_kind.get("", 0))
        yield caches
        hit_rate = GaugeMetricFamily(
            "ragapp_answer_cache_hit_ratio", "Share of answers served from a cache (0-1)"
        )
        hit_rate.add_metric([], (total - by_kind.get("", 0)) / total if total else 0.0)
        yield hit_rate

        guardrails = CounterMetricFamily(
            "ragapp_guardrail_actions",
            "Guardrail decisions by stage, rule and action",
            labels=["stage", "rule", "action"],
        )
        for row in GuardrailEvent.objects.values("stage", "rule", "action").annotate(n=Count("id")):
            guardrails.add_metric([row["stage"], row["rule"], row["action"]], row["n"])
        yield guardrails

    def _usage(self) -> Iterator[MetricFamily]:
        from agent.models import UsageRecord

        attempts = CounterMetricFamily(
            "ragapp_provider_attempts",
            "Model calls by provider, model and outcome",
            labels=["provider", "model", "outcome"],
        )
        tokens = CounterMetricFamily(
            "ragapp_llm_tokens", "Tokens by model and direction", labels=["model", "direction"]
        )
        cost = CounterMetricFamily("ragapp_llm_cost_usd", "Cost in USD by model", labels=["model"])
        usage = UsageRecord.objects.values("provider", "model", "error_code").annotate(
            n=Count("id"),
            tin=Sum("input_tokens"),
            tout=Sum("output_tokens"),
            usd=Sum("cost_usd"),
        )
        per_model: dict[str, list[float]] = {}
        for row in usage:
            attempts.add_metric(
                [row["provider"], row["model"], row["error_code"] or "ok"], row["n"]
            )
            totals = per_model.setdefault(row["model"], [0.0, 0.0, 0.0])
            totals[0] += row["tin"] or 0
            totals[1] += row["tout"] or 0
            totals[2] += float(row["usd"] or 0)
        for model, (tin, tout, usd) in per_model.items():
            tokens.add_metric([model, "input"], tin)
            tokens.add_metric([model, "output"], tout)
            cost.add_metric([model], usd)
        yield attempts
        yield tokens
        yield cost

        errors = CounterMetricFamily(
            "ragapp_provider_errors",
            "Failed model calls by provider, model and error type",
            labels=["provider", "model", "code"],
        )
        failed = (
            UsageRecord.objects.exclude(error_code="")
            .values("provider", "model", "error_code")
            .annotate(n=Count("id"))
        )
        for row in failed:
            errors.add_metric([row["provider"], row["model"], row["error_code"]], row["n"])
        yield errors

    def _ingestion(self) -> Iterator[MetricFamily]:
        from ingestion.models import Document

        documents = GaugeMetricFamily("ragapp_documents", "Documents by status", labels=["status"])
        for row in Document.objects.values("status").annotate(n=Count("id")):
            documents.add_metric([row["status"]], row["n"])
        yield documents

        ingest = CounterMetricFamily(
            "ragapp_ingest_seconds",
            "Total ingestion time of finished documents, by outcome",
            labels=["status"],
        )
        finished = (
            Document.objects.filter(started_at__isnull=False, finished_at__isnull=False)
            .values("status")
            .annotate(seconds=Sum(F("finished_at") - F("started_at")))
        )
        for row in finished:
            ingest.add_metric([row["status"]], row["seconds"].total_seconds())
        yield ingest
        yield _stage_seconds()

        depth = GaugeMetricFamily(
            "ragapp_ingest_queue_depth",
            "Documents waiting or being ingested; broker_<queue>: messages waiting in that queue",
            labels=["source"],
        )
        pending = Document.objects.aggregate(
            queued=Count("id", filter=Q(status=Document.Status.QUEUED)),
            processing=Count("id", filter=Q(status=Document.Status.PROCESSING)),
        )
        depth.add_metric(["queued"], pending["queued"])
        depth.add_metric(["processing"], pending["processing"])
        for queue in dict.fromkeys([settings.RAGAPP_QUEUE_PARSE, settings.RAGAPP_QUEUE_EMBED]):
            waiting = _broker_queue_length(queue)
            if waiting is not None:
                depth.add_metric([f"broker_{queue}"], waiting)
        yield depth

    def _breakers(self) -> Iterator[MetricFamily]:
        from agent.services.breaker import breaker_states

        state = GaugeMetricFamily(
            "ragapp_circuit_breaker_state",
            "1 for each provider/model breaker's current state (closed, open, half_open)",
            labels=["provider", "model", "state"],
        )
        failures = GaugeMetricFamily(
            "ragapp_circuit_breaker_failures",
            "Failed turns in a row per provider/model",
            labels=["provider", "model"],
        )
        try:
            breakers = breaker_states()
        except Exception:  # noqa: BLE001 - e.g. Redis down: the other metrics still count
            logger.warning("circuit breaker states unavailable", exc_info=True)
            breakers = {}
        for key, info in sorted(breakers.items()):
            provider, _, model = key.partition("/")
            for name in BREAKER_STATES:
                state.add_metric([provider, model, name], 1.0 if info["state"] == name else 0.0)
            failures.add_metric([provider, model], info["failures"])
        yield state
        yield failures


def _stage_seconds() -> HistogramMetricFamily:
    """Each document's recorded stage durations (``Document.stage_seconds``) as one histogram
    per stage, aggregated in the database."""
    buckets = ", ".join(
        f"count(*) FILTER (WHERE s.value::text::float <= {b})" for b in STAGE_BUCKETS
    )  # constants, not input: safe to format in
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.key, count(*), sum(s.value::text::float), {buckets}"
            " FROM ingestion_document d, jsonb_each(d.stage_seconds) s"
            " WHERE jsonb_typeof(s.value) = 'number' GROUP BY s.key ORDER BY s.key"
        )
        rows = cursor.fetchall()
    family = HistogramMetricFamily(
        "ragapp_ingest_stage_seconds", "Ingestion time per stage, per document", labels=["stage"]
    )
    for stage, count, total, *cumulative in rows:
        points = [(str(b), n) for b, n in zip(STAGE_BUCKETS, cumulative, strict=True)]
        family.add_metric([stage], buckets=[*points, ("+Inf", count)], sum_value=total)
    return family


def _broker_queue_length(queue: str) -> int | None:
    """Messages waiting in the broker's queue, when that is one cheap read: the database
    broker's table (when it lives in our database) or a Redis list. None otherwise."""
    url = str(settings.CELERY_BROKER_URL)
    try:
        if url.startswith("sqla+"):
            with connection.cursor() as cursor:
                cursor.execute("SELECT to_regclass('kombu_message') IS NOT NULL")
                if not cursor.fetchone()[0]:
                    return None  # no message sent yet, or the broker is another database
                cursor.execute(
                    "SELECT count(*) FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id"
                    " WHERE q.name = %s AND m.visible",
                    [queue],
                )
                return int(cursor.fetchone()[0])
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            return int(client.llen(queue))
    except Exception:  # noqa: BLE001 - a metric must never fail the scrape
        logger.warning("broker queue length unavailable", exc_info=True)
    return None


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REQUEST_LATENCY)
    registry.register(DatabaseCollector())
    return registry


@extend_schema(exclude=True)  # Prometheus text, not part of the REST API
@api_view(["GET"])
@permission_classes([IsAdminUser])
def metrics_view(request: Request) -> HttpResponse:
    """Prometheus text format; staff only (session or ``Authorization: Token``)."""
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Observes every request's latency under its URL pattern name (never the raw path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.view_name if match else "") or "unmatched"
        REQUEST_LATENCY.labels(route, request.method or "", str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response
