"""Metrics after known traffic, request ids, and redacted JSON logs."""

from __future__ import annotations

import json
import logging

import pytest

from ragapp.observability import ContextFilter, redact

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def metric_value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{wanted}}} not in metrics")


def test_metrics_are_for_staff_only(client_for, alice, api_client):
    assert api_client.get("/metrics").status_code == 401
    assert client_for(alice).get("/metrics").status_code == 403


def test_metrics_count_answers_by_decision_after_known_traffic(client_for, alice, bob, sample_kb):
    client = client_for(alice)
    client.post(
        "/api/v1/ask", {"question": "How long is a password reset link valid?"}, format="json"
    )
    client.post("/api/v1/ask", {"question": "What is the boiling point of mercury?"}, format="json")
    client.post("/api/v1/ask", {"question": "x" * 3000}, format="json")
    text = client_for(bob).get("/metrics").content.decode()
    assert metric_value(text, "ragapp_answers_total", decision="answered") == 1
    assert metric_value(text, "ragapp_answers_total", decision="refused") == 1
    assert (
        metric_value(text, "ragapp_provider_attempts_total", provider="extractive", outcome="ok")
        == 2
    )
    assert (
        metric_value(
            text, "ragapp_guardrail_actions_total", rule="question_too_long", action="rejected"
        )
        == 1
    )
    assert metric_value(text, "ragapp_documents", status="ready") == len(sample_kb)
    assert metric_value(text, "ragapp_llm_cost_usd_total", model="extractive") == 0
    assert (
        metric_value(
            text,
            "ragapp_request_latency_seconds_count",
            route="api-ask",
            method="POST",
            status="200",
        )
        >= 2
    )


def test_ingest_stage_durations_are_a_histogram_per_stage(client_for, bob, sample_kb):
    text = client_for(bob).get("/metrics").content.decode()
    timings = [d.stage_seconds for d in sample_kb]
    for stage in ("parse", "chunk", "embed", "index"):
        count = metric_value(text, "ragapp_ingest_stage_seconds_count", stage=stage)
        assert count == len(sample_kb)
        assert metric_value(text, "ragapp_ingest_stage_seconds_bucket", stage=stage, le="+Inf") == (
            count
        )
        assert metric_value(text, "ragapp_ingest_stage_seconds_sum", stage=stage) == pytest.approx(
            sum(t[stage] for t in timings), abs=1e-6
        )
        fast = sum(1 for t in timings if t[stage] <= 0.5)
        assert metric_value(text, "ragapp_ingest_stage_seconds_bucket", stage=stage, le="0.5") == (
            fast
        )


def test_every_response_carries_a_request_id_and_keeps_a_valid_incoming_one(client):
    assert len(client.get("/healthz")["X-Request-ID"]) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abcdef12-3456")["X-Request-ID"] == (
        "abcdef12-3456"
    )
    assert client.get("/healthz", HTTP_X_REQUEST_ID="bad id!")["X-Request-ID"] != "bad id!"


def test_logs_redact_api_keys_tokens_emails_and_card_numbers():
    line = redact(
        "key sk-abcdefghijklmnopqrstuvwx user jane@example.com card 4111 1111 1111 1111 "
        "Authorization: Token 0123456789abcdef0123456789abcdef password=hunter2"
    )
    for secret in [
        "sk-abcdefghijklmnop",
        "jane@example.com",
        "4111 1111",
        "0123456789abcdef",
        "hunter2",
    ]:
        assert secret not in line


def test_json_log_records_carry_the_request_id_and_redacted_fields(caplog):
    from pythonjsonlogger.json import JsonFormatter

    logger = logging.getLogger("ragapp.test")
    record = logger.makeRecord(
        "ragapp.test",
        logging.INFO,
        __file__,
        1,
        "calling with sk-abcdefghijklmnopqrstuvwx",
        (),
        None,
        extra={"user_email": "jane@example.com"},
    )
    ContextFilter().filter(record)
    out = json.loads(JsonFormatter("%(message)s %(request_id)s").format(record))
    assert out["message"] == "calling with sk-[REDACTED]"
    assert out["user_email"] == "[EMAIL]"
    assert "request_id" in out


def test_mapping_arguments_still_format_after_redaction():
    record = logging.getLogger("celery").makeRecord(
        "celery",
        logging.INFO,
        __file__,
        1,
        "Task %(name)s[%(id)s] received",
        ({"name": "ingestion.process", "id": "abc"},),
        None,
    )
    ContextFilter().filter(record)
    assert record.getMessage() == "Task ingestion.process[abc] received"
