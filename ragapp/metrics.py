"""Prometheus metrics at ``/metrics`` (staff only).

Business metrics are read from the database at scrape time, so web and worker processes agree
and nothing is lost on restart. Request latency is measured in-process; with several gunicorn
workers set ``PROMETHEUS_MULTIPROC_DIR`` (``make run`` does) so every worker's samples count.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from django.db.models import Count, F, Sum
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


class DatabaseCollector(Collector):
    """Answers, provider attempts, tokens, cost, guardrail actions and ingestion, from the DB."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from agent.models import GuardrailEvent, Message, UsageRecord
        from ingestion.models import Document

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

        guardrails = CounterMetricFamily(
            "ragapp_guardrail_actions",
            "Guardrail decisions by stage, rule and action",
            labels=["stage", "rule", "action"],
        )
        for row in GuardrailEvent.objects.values("stage", "rule", "action").annotate(n=Count("id")):
            guardrails.add_metric([row["stage"], row["rule"], row["action"]], row["n"])
        yield guardrails

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
