from __future__ import annotations

import pytest
from django.test import override_settings

from agent.models import Feedback, GuardrailEvent, Message, UsageRecord
from agent.providers.registry import chat_models
from tests.support.openai_server import FakeOpenAIServer, ok, status

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

RESET_QUESTION = "How long is a password reset link valid?"


def ask(client, **body):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/ask", body, format="json")


def test_asking_without_a_token_is_refused_with_a_json_error(api_client):
    response = ask(api_client, question="Hello?")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_request_without_a_question_gets_a_clear_validation_error(client_for, alice):
    response = client_for(alice).post("/api/v1/ask", {"conversation": "nope"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert set(error["extra"]["fields"]) == {"question", "conversation"}


def test_a_question_over_the_limit_is_rejected_before_retrieval_and_logged(client_for, alice):
    response = ask(client_for(alice), question="x" * 2001)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "question_too_long"
    event = GuardrailEvent.objects.get()
    assert (event.stage, event.rule, event.action) == ("input", "question_too_long", "rejected")
    assert not Message.objects.exists()


def test_an_answerable_question_gets_a_cited_answer(client_for, alice, sample_kb):
    response = ask(client_for(alice), question=RESET_QUESTION)
    assert response.status_code == 200
    body = response.json()
    assert body["decision"] == "answered"
    assert "30 minutes" in body["answer"]
    assert "[1]" in body["answer"]
    first = body["citations"][0]
    assert first["number"] == 1 and "30 minutes" in first["text"]
    assert first["document"]["title"] and first["url"].endswith("/file")
    assert body["prompt_version"] == "grounded_answer@1"
    assert body["usage"] == {
        "calls": 1,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "estimated": False,
    }
    usage = UsageRecord.objects.get()
    assert (usage.provider, usage.model, usage.route, usage.user) == (
        "extractive",
        "extractive",
        "answer.easy",  # the router's choice for a short single-topic question
        alice,
    )


def test_every_answer_sentence_carries_a_citation_marker(client_for, alice, sample_kb):
    body = ask(client_for(alice), question="How much does the Pro plan cost?").json()
    assert body["decision"] == "answered"
    assert "$8" in body["answer"]
    numbers = {c["number"] for c in body["citations"]}
    for sentence in body["answer"].split("] ")[:-1]:
        assert "[" in sentence
    assert numbers == set(range(1, len(numbers) + 1))


def test_a_question_the_documents_do_not_cover_is_refused_honestly(client_for, alice, sample_kb):
    body = ask(client_for(alice), question="What is the boiling point of mercury?").json()
    assert body["decision"] == "refused"
    assert body["citations"] == []
    assert body["answer"].startswith("I don't have that in the documentation.")
    assert GuardrailEvent.objects.filter(rule="no_evidence").exists()


def test_with_no_documents_at_all_the_answer_says_so(client_for, alice):
    body = ask(client_for(alice), question=RESET_QUESTION).json()
    assert body["decision"] == "refused"
    assert "No documents have been added yet" in body["answer"]


def test_a_follow_up_joins_the_same_conversation(client_for, alice, sample_kb):
    client = client_for(alice)
    first = ask(client, question=RESET_QUESTION).json()
    second = ask(
        client, question="How many recovery codes do I get?", conversation=first["conversation"]
    ).json()
    assert second["conversation"] == first["conversation"]
    history = client.get(f"/api/v1/conversations/{first['conversation']}").json()
    assert [m["role"] for m in history["messages"]] == ["user", "assistant", "user", "assistant"]


def test_another_users_conversation_answers_like_a_missing_one(
    client_for, alice, mallory, sample_kb
):
    conversation = ask(client_for(alice), question=RESET_QUESTION).json()["conversation"]
    client = client_for(mallory)
    foreign = client.get(f"/api/v1/conversations/{conversation}")
    missing = client.get("/api/v1/conversations/00000000-0000-0000-0000-000000000000")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert ask(client, question="Hi?", conversation=conversation).status_code == 404


def test_feedback_is_stored_once_per_user_and_answer(client_for, alice, mallory, sample_kb):
    client = client_for(alice)
    message = ask(client, question=RESET_QUESTION).json()["message"]
    assert (
        client.post(
            "/api/v1/feedback",
            {"message": message, "rating": -1, "comment": "Too short"},
            format="json",
        ).status_code
        == 201
    )
    assert (
        client.post(
            "/api/v1/feedback", {"message": message, "rating": 1}, format="json"
        ).status_code
        == 201
    )
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.user) == (1, alice)
    outsider = client_for(mallory).post(
        "/api/v1/feedback", {"message": message, "rating": -1}, format="json"
    )
    assert outsider.status_code == 404


@pytest.fixture
def openai_chain():  # type: ignore[no-untyped-def]
    """Point the fallback chain at a loopback OpenAI-protocol server, then the extractive model."""
    with FakeOpenAIServer(default=ok()) as server:
        chain = [
            {
                "KIND": "openai",
                "OPTIONS": {
                    "model": "gpt-4o-mini",
                    "base_url": server.url,
                    "timeout_s": 2.0,
                    "max_attempts": 2,
                },
            },
            {"KIND": "extractive", "OPTIONS": {}},
        ]
        with override_settings(RAG_CHAT_MODELS=chain, OPENAI_BASE_URL=server.url):
            chat_models.cache_clear()
            yield server
        chat_models.cache_clear()


def test_the_openai_provider_answers_with_citations_and_records_cost(
    client_for, alice, sample_kb, openai_chain
):
    openai_chain.script(
        ok(
            {
                "decision": "answer",
                "confidence": 0.9,
                "claims": [{"text": "Reset links expire after 30 minutes.", "passages": [1]}],
            },
            usage=(1000, 50),
        )
    )
    body = ask(client_for(alice), question=RESET_QUESTION).json()
    assert body["decision"] == "answered" and body["degraded"] is False
    assert body["answer"] == "Reset links expire after 30 minutes. [1]"
    usage = UsageRecord.objects.get()
    assert (usage.provider, usage.input_tokens, usage.output_tokens) == ("openai", 1000, 50)
    assert float(usage.cost_usd) == pytest.approx((1000 * 0.15 + 50 * 0.60) / 1e6)
    sent = openai_chain.requests[0]
    assert "<<<" in sent.messages[1]["content"] and sent.idempotency_key


def test_claims_citing_unretrieved_passages_never_reach_the_user(
    client_for, alice, sample_kb, openai_chain
):
    openai_chain.script(
        ok(
            {
                "decision": "answer",
                "confidence": 0.9,
                "claims": [
                    {"text": "Reset links expire after 30 minutes.", "passages": [1]},
                    {"text": "Also, call 555-0100 for a free upgrade.", "passages": [42]},
                ],
            }
        )
    )
    body = ask(client_for(alice), question=RESET_QUESTION).json()
    assert "555-0100" not in body["answer"]
    assert GuardrailEvent.objects.filter(rule="invalid_citation", action="removed").count() == 1


def test_when_the_provider_is_down_the_extractive_answerer_takes_over_marked_degraded(
    client_for, alice, sample_kb, openai_chain
):
    openai_chain.default = status(503)
    body = ask(client_for(alice), question=RESET_QUESTION).json()
    assert body["decision"] == "answered" and body["degraded"] is True
    assert "30 minutes" in body["answer"]
    assert len(openai_chain.requests) == 2  # max_attempts, no SDK retries on top
    records = list(UsageRecord.objects.order_by("id").values_list("provider", "succeeded"))
    assert records == [("openai", False), ("openai", False), ("extractive", True)]
    assert body["usage"]["calls"] == 3
