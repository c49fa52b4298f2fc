"""Operations metrics after known traffic: cache hits, provider errors by type, circuit-breaker
state, ingestion queue depth and stage durations."""

from __future__ import annotations

import io

import pytest

from ingestion import services
from ingestion.models import Document
from tests.integration.test_observability import metric_value
from tests.support.openai_server import status

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How long is a password reset link valid?"


def scrape(client_for, staff) -> str:  # type: ignore[no-untyped-def]
    response = client_for(staff).get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def test_cache_hits_are_counted_by_kind_with_the_hit_ratio(client_for, alice, bob, small_kb, chain):
    chain("gpt-4o")
    client = client_for(alice)
    for _ in range(3):  # one miss, then two exact hits
        assert client.post("/api/v1/ask", {"question": QUESTION}, format="json").status_code == 200
    text = scrape(client_for, bob)
    assert metric_value(text, "ragapp_answer_cache_total", cache="miss") == 1
    assert metric_value(text, "ragapp_answer_cache_total", cache="exact") == 2
    assert metric_value(text, "ragapp_answer_cache_total", cache="semantic") == 0
    assert metric_value(text, "ragapp_answer_cache_hit_ratio") == pytest.approx(2 / 3)


def test_provider_errors_by_type_and_the_open_breaker_are_exported(
    client_for, alice, bob, small_kb, chain
):
    server = chain("gpt-4o", RAGAPP_BREAKER_FAILURES=1)
    server.script(status(500), status(503))  # both attempts fail: the extractive answerer answers
    response = client_for(alice).post("/api/v1/ask", {"question": QUESTION}, format="json")
    assert response.status_code == 200 and response.json()["degraded"] is True
    text = scrape(client_for, bob)
    for code in ("http_500", "http_503"):
        assert metric_value(text, "ragapp_provider_errors_total", model="gpt-4o", code=code) == 1
    labels = {"provider": "openai", "model": "gpt-4o"}
    assert metric_value(text, "ragapp_circuit_breaker_state", state="open", **labels) == 1
    assert metric_value(text, "ragapp_circuit_breaker_state", state="closed", **labels) == 0
    assert metric_value(text, "ragapp_circuit_breaker_failures", **labels) == 1


def test_a_failure_the_retry_recovers_counts_as_an_error_but_opens_no_breaker(
    client_for, alice, bob, small_kb, chain
):
    server = chain("gpt-4o", RAGAPP_BREAKER_FAILURES=1)
    server.script(status(500))  # one failed attempt, then the retry answers
    response = client_for(alice).post("/api/v1/ask", {"question": QUESTION}, format="json")
    assert response.status_code == 200 and response.json()["degraded"] is False
    text = scrape(client_for, bob)
    assert metric_value(text, "ragapp_provider_errors_total", code="http_500") == 1
    opened = [
        line
        for line in text.splitlines()
        if line.startswith("ragapp_circuit_breaker_state{") and 'state="open"' in line
    ]
    assert all(line.endswith(" 0.0") for line in opened)


def test_ingestion_queue_depth_counts_queued_and_processing_documents(client_for, bob):
    collection = services.collection_get_or_create()
    for n in range(3):  # stored and queued; no worker runs in this test
        services.document_create(
            fh=io.BytesIO(f"note {n}".encode()), name=f"n{n}.txt", collection=collection
        )
    Document.objects.filter(original_name="n0.txt").update(status=Document.Status.PROCESSING)
    text = scrape(client_for, bob)
    assert metric_value(text, "ragapp_ingest_queue_depth", source="queued") == 2
    assert metric_value(text, "ragapp_ingest_queue_depth", source="processing") == 1
