from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_healthz_answers_without_touching_dependencies(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_database_broker_and_embedder(client):
    from retrieval.providers.registry import embedder

    embedder().load()
    body = client.get("/readyz").json()
    assert body["checks"]["database"]["ok"] and body["checks"]["database"]["pgvector"]
    assert body["checks"]["embedder"]["model"].startswith("all-MiniLM-L6-v2@")
    assert body["checks"]["broker"]["ok"], body["checks"]["broker"]
    assert body["status"] == "ready"


def test_the_openapi_schema_lists_the_v1_endpoints(client):
    schema = client.get("/api/schema/?format=json").json()
    assert {"/api/v1/ask", "/api/v1/documents", "/api/v1/feedback"} <= set(schema["paths"])


def test_the_api_docs_page_uses_no_cdn(client):
    html = client.get("/api/docs/").content.decode()
    assert "swagger" in html.lower() and "cdn" not in html.lower()


def test_the_chat_page_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_the_api_token_command_prints_a_working_token(client, alice):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("api_token", "alice", stdout=out)
    key = out.getvalue().strip()
    response = client.get("/api/v1/documents", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200
