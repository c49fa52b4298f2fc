"""Budgets, cost roll-ups, idempotent retries, the answer caches and the router, through the API
against the loopback OpenAI-protocol server."""

from __future__ import annotations

from typing import Any

import pytest

from agent.models import AnswerCache, GuardrailEvent, Message, UsageRecord
from ingestion.models import Document
from tests.support.openai_server import ok, status

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How long is a password reset link valid?"
CLAIM = "Password reset links expire after 30 minutes."
ANSWER = {"decision": "answer", "confidence": 0.9, "claims": [{"text": CLAIM, "passages": [1]}]}


def ask(client, question: str = QUESTION, headers: dict[str, str] | None = None, **body: Any):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/ask", {"question": question, **body}, format="json", headers=headers or {}
    )


# --- budgets -------------------------------------------------------------------------------------


def test_over_the_daily_token_budget_the_api_answers_429_without_calling_the_provider(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", RAGAPP_BUDGET_USER_DAY_TOKENS=1000)
    server.script(ok(ANSWER, usage=(900, 100)))
    api = client_for(alice)
    assert ask(api).status_code == 200

    response = ask(api, "How many recovery codes do I get?")

    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "budget_user_day_tokens"
    assert "Try again tomorrow" in error["message"]
    assert (error["extra"]["used"], error["extra"]["limit"]) == (1000, 1000)
    assert len(server.requests) == 1
    assert Message.objects.filter(role="user").count() == 1  # the refused question is not stored


def test_the_conversation_money_budget_stops_a_costly_conversation(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", RAGAPP_BUDGET_CONVERSATION_USD=0.001)
    server.script(ok(ANSWER, usage=(1000, 50)))  # $0.003
    api = client_for(alice)
    conversation = ask(api).json()["conversation"]

    follow_up = ask(api, "How many recovery codes do I get?", conversation=conversation)
    fresh = ask(api, "How many recovery codes do I get?")

    assert follow_up.status_code == 429
    assert follow_up.json()["error"]["code"] == "budget_conversation_usd"
    assert fresh.status_code == 200  # a new conversation has its own budget


def test_cost_rolls_up_per_day_route_model_and_user_for_staff_only(
    client_for, alice, bob, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(status(503), ok(ANSWER, usage=(1000, 50)))
    ask(client_for(alice))

    assert client_for(alice).get("/api/v1/usage?by=user").status_code == 403
    rows = client_for(bob).get("/api/v1/usage?by=user").json()["rows"]
    assert rows == [
        {
            "user": "alice",
            "calls": 2,
            "failed": 1,
            "input_tokens": 1000,
            "output_tokens": 50,
            "cost_usd": pytest.approx(0.003),
        }
    ]
    by_route = client_for(bob).get("/api/v1/usage?by=route").json()["rows"]
    assert [r["route"] for r in by_route] == ["answer.easy"]
    assert client_for(bob).get("/api/v1/usage?by=day").json()["rows"][0]["calls"] == 2


# --- idempotency ---------------------------------------------------------------------------------


def test_a_repeated_idempotency_key_returns_the_stored_answer_without_a_provider_call(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", RAGAPP_CACHE_EXACT=False, RAGAPP_CACHE_SEMANTIC=False)
    server.script(ok(ANSWER, usage=(1000, 50)))
    api = client_for(alice)
    headers = {"Idempotency-Key": "retry-me-1"}

    first = ask(api, headers=headers).json()
    again = ask(api, headers=headers).json()

    assert again["message"] == first["message"] and again["answer"] == first["answer"]
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["usage"] == first["usage"]  # what the answer cost, charged once
    assert len(server.requests) == 1
    assert UsageRecord.objects.count() == 1 and Message.objects.count() == 2


def test_an_idempotency_key_reused_for_another_question_is_rejected(
    client_for, alice, small_kb, chain
):
    chain("gpt-4o")
    api = client_for(alice)
    ask(api, headers={"Idempotency-Key": "k"})

    response = ask(api, "Something else?", headers={"Idempotency-Key": "k"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_another_users_idempotency_key_is_independent(client_for, alice, mallory, small_kb, chain):
    server = chain("gpt-4o", RAGAPP_CACHE_EXACT=False, RAGAPP_CACHE_SEMANTIC=False)
    ask(client_for(alice), headers={"Idempotency-Key": "same"})

    body = ask(client_for(mallory), headers={"Idempotency-Key": "same"}).json()

    assert body["replayed"] is False and len(server.requests) == 2


# --- caches --------------------------------------------------------------------------------------


def test_a_repeated_question_is_an_exact_cache_hit_that_costs_nothing(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(ok(ANSWER, usage=(1000, 50)))
    api = client_for(alice)
    first = ask(api).json()

    again = ask(api, "  how long is a PASSWORD reset link valid ").json()

    assert (first["cached"], again["cached"]) == (None, "exact")
    assert again["answer"] == first["answer"] and again["citations"] == first["citations"]
    assert again["usage"]["calls"] == 0 and again["usage"]["cost_usd"] == 0
    assert len(server.requests) == 1
    message = Message.objects.get(id=again["message"])
    assert message.cache == "exact" and message.trace["saved_usd"] == pytest.approx(0.003)


def test_an_exact_hit_embeds_nothing_retrieves_nothing_and_reads_the_cache_once(
    alice, small_kb, chain, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agent.services import answer_question
    from retrieval.providers.registry import embedder

    chain("gpt-4o").script(ok(ANSWER))
    answer_question(user=alice, question=QUESTION)

    def no_model(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a cache hit must not embed")

    for name in ("embed_query", "embed_sentences", "embed_documents"):
        monkeypatch.setattr(embedder(), name, no_model)
    with CaptureQueriesContext(connection) as queries:
        outcome = answer_question(user=alice, question=QUESTION)

    assert outcome.message.cache == "exact"
    sql = [q["sql"] for q in queries.captured_queries]
    assert len([s for s in sql if s.startswith("SELECT") and "agent_answercache" in s]) == 1
    assert not any("ingestion_chunk" in s for s in sql)  # no retrieval


def test_a_paraphrase_is_a_semantic_cache_hit(client_for, alice, small_kb, chain):
    server = chain("gpt-4o", RAGAPP_CACHE_SEMANTIC_MIN=0.9)
    server.script(ok(ANSWER))
    api = client_for(alice)
    ask(api)

    again = ask(api, "How long is the password reset link valid for?").json()

    assert again["cached"] == "semantic" and len(server.requests) == 1


def test_a_follow_up_never_hits_an_entry_made_without_its_context(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", RAGAPP_CACHE_SEMANTIC_MIN=0.5)
    api = client_for(alice)
    ask(api)  # cached as a first turn
    conversation = ask(api, "How many recovery codes do I get?").json()["conversation"]

    follow_up = ask(api, QUESTION, conversation=conversation).json()

    assert follow_up["cached"] is None
    assert len(server.requests) == 3


def test_the_caches_are_invalidated_when_the_documents_change(client_for, alice, small_kb, chain):
    server = chain("gpt-4o")
    api = client_for(alice)
    ask(api)
    Document.objects.filter(id=small_kb[1].id).delete()

    again = ask(api).json()

    assert again["cached"] is None and len(server.requests) == 2
    assert AnswerCache.objects.count() == 1  # the stale entry was purged


def test_escalated_and_degraded_answers_are_not_cached(client_for, alice, small_kb, chain):
    server = chain("gpt-4o")
    server.default = status(503)
    ask(client_for(alice))

    assert not AnswerCache.objects.exists()
    assert len(server.requests) == 2


# --- routing -------------------------------------------------------------------------------------


def test_easy_questions_go_to_the_cheap_model_and_hard_ones_to_the_flagship(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", routes={"easy": ["gpt-4o-mini"]})
    api = client_for(alice)

    easy = ask(api).json()
    hard = ask(api, "Why do password reset links expire, and how does that compare to 2FA?").json()

    assert [r.body["model"] for r in server.requests] == ["gpt-4o-mini", "gpt-4o"]
    assert (easy["route"], hard["route"]) == ("easy", "hard")
    message = Message.objects.get(id=hard["message"])
    assert message.trace["route"]["reason"].startswith("asks for reasoning")
    routes = sorted(UsageRecord.objects.values_list("route", "model"))
    assert routes == [("answer.easy", "gpt-4o-mini"), ("answer.hard", "gpt-4o")]


def test_a_follow_up_is_rewritten_into_a_standalone_query_before_retrieval(
    client_for, alice, small_kb, chain
):
    chain("gpt-4o")
    api = client_for(alice)
    conversation = ask(api, "How do I turn on two-factor authentication?").json()["conversation"]

    body = ask(api, "What about recovery codes?", conversation=conversation).json()

    message = Message.objects.get(id=body["message"])
    assert message.trace["rewritten_query"].startswith("What about recovery codes? (")
    assert "two" in message.trace["rewritten_query"]
    assert message.trace["context"]["tokenizer"] == "embedder"


def test_a_refusal_for_no_evidence_is_logged_and_names_the_documents(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(ok({"decision": "refuse", "confidence": 0.9, "claims": []}))

    body = ask(client_for(alice), "What is the boiling point of mercury?").json()

    assert body["decision"] == "refused"
    assert "Account and security" in body["answer"]
    assert GuardrailEvent.objects.filter(rule="no_evidence", action="refused").exists()
