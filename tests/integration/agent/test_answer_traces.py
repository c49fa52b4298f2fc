"""Traces of real answers through the API (the loopback OpenAI-protocol server answers): span
names, parents and attributes, the message's trace id, the stored waterfall page, log fields."""

from __future__ import annotations

import logging
import re

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from agent.models import Message
from ragapp.observability import ContextFilter
from ragapp.tracing import spans_store
from tests.support.openai_server import status

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How long is a password reset link valid?"
ANSWER_STEPS = [
    "ragapp.answer.guard_input",
    "ragapp.answer.rewrite",
    "ragapp.answer.cache",
    # The question is embedded once, for the semantic cache; retrieval reuses that vector (it
    # embeds under ragapp.answer.retrieve.embed only when the semantic cache is off).
    "ragapp.answer.cache.embed",
    "ragapp.answer.retrieve",
    "ragapp.answer.retrieve.dense",
    "ragapp.answer.retrieve.lexical",
    "ragapp.answer.retrieve.fuse",
    "ragapp.answer.retrieve.rerank",
    "ragapp.answer.prompt_build",
    "ragapp.answer.generate",
    "ragapp.llm.attempt",
    "ragapp.answer.output_guard",
    "ragapp.answer.validate",
    "ragapp.answer.gate",
]


def ask(client, question: str = QUESTION, **extra):  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/ask", {"question": question, **extra}, format="json")
    assert response.status_code == 200, response.content
    return response


def by_name(spans) -> dict[str, list]:  # type: ignore[no-untyped-def]
    found: dict[str, list] = {}
    for s in spans.get_finished_spans():
        found.setdefault(s.name, []).append(s)
    return found


def hex_trace(s) -> str:  # type: ignore[no-untyped-def]
    return format(s.context.trace_id, "032x")


def test_an_answer_records_a_span_for_every_step_in_the_request_trace(
    client_for, alice, small_kb, chain, spans
):
    chain("gpt-4o")
    ask(client_for(alice))
    message = Message.objects.get(role=Message.Role.ASSISTANT)
    assert re.fullmatch(r"[0-9a-f]{32}", message.trace_id)
    named = by_name(spans)
    for step in ANSWER_STEPS:
        assert step in named, step
    (request,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    (answer,) = named["ragapp.answer"]
    assert answer.parent.span_id == request.context.span_id  # under the Django request span
    ours = [s for s in spans.get_finished_spans() if s.name.startswith("ragapp.")]
    assert {hex_trace(s) for s in ours} == {message.trace_id}
    # the user's question message carries the same trace id
    assert Message.objects.get(role=Message.Role.USER).trace_id == message.trace_id
    assert answer.attributes["ragapp.decision"] == message.decision == "answered"
    assert answer.attributes["ragapp.message_id"] == message.id
    assert answer.attributes["ragapp.conversation_id"] == str(message.conversation_id)
    assert answer.attributes["enduser.id"] == str(alice.pk)
    assert answer.attributes["ragapp.prompt_hash"] == message.prompt_hash
    rerank = named["ragapp.answer.retrieve.rerank"][0]
    assert rerank.attributes["ragapp.returned"] >= len(message.citations) > 0
    assert named["ragapp.answer.gate"][0].attributes["ragapp.decision"] == "answered"
    assert named["ragapp.answer.cache"][0].attributes["ragapp.hit"] == "miss"


def test_each_model_attempt_has_a_span_with_model_tokens_cost_and_prompt(
    client_for, alice, small_kb, chain, spans
):
    server = chain("gpt-4o")
    server.script(status(500))  # the first call fails, the retry answers
    ask(client_for(alice))
    message = Message.objects.get(role=Message.Role.ASSISTANT)
    named = by_name(spans)
    (generate,) = named["ragapp.answer.generate"]
    first, second = sorted(
        named["ragapp.llm.attempt"], key=lambda s: s.attributes["ragapp.attempt"]
    )
    assert first.parent.span_id == second.parent.span_id == generate.context.span_id
    assert first.attributes["ragapp.outcome"] == "http_500"
    assert first.status.status_code == StatusCode.ERROR
    assert second.attributes["ragapp.outcome"] == "ok"
    for attempt in (first, second):
        assert attempt.attributes["gen_ai.provider.name"] == "openai"
        assert attempt.attributes["gen_ai.request.model"] == "gpt-4o"
        assert attempt.attributes["ragapp.prompt_id"] == message.prompt_id
        assert attempt.attributes["ragapp.prompt_version"] == message.prompt_version
        assert attempt.attributes["ragapp.prompt_hash"] == message.prompt_hash
        assert generate.start_time <= attempt.start_time <= attempt.end_time
        assert attempt.end_time <= generate.end_time
    assert first.end_time <= second.start_time  # the retry came after the failure
    assert second.attributes["gen_ai.usage.input_tokens"] > 0
    assert second.attributes["gen_ai.usage.output_tokens"] > 0
    assert second.attributes["ragapp.cost_usd"] > 0  # gpt-4o is in the price table
    assert second.attributes["ragapp.latency_ms"] == pytest.approx(
        (second.end_time - second.start_time) / 1e6, abs=1
    )


def test_spans_carry_no_question_text_only_its_length_and_hash(
    client_for, alice, small_kb, chain, spans
):
    chain("gpt-4o")
    question = "How long is a password reset link valid for jane@example.com?"
    ask(client_for(alice), question)
    values = [
        str(v)
        for s in spans.get_finished_spans()
        for v in (s.attributes or {}).values()
        if isinstance(v, str)
    ]
    assert not any("password reset" in v or "jane@example.com" in v for v in values)
    (guard,) = by_name(spans)["ragapp.answer.guard_input"]
    assert guard.attributes["ragapp.question.chars"] == len(question)
    assert len(guard.attributes["ragapp.question.sha256"]) == 16


def test_a_streamed_answer_is_one_trace_that_outlives_its_request_span(
    client_for, alice, small_kb, chain, spans
):
    chain("gpt-4o")
    response = ask(client_for(alice), stream=True)
    body = b"".join(response.streaming_content).decode()
    assert "event: done" in body
    message = Message.objects.get(role=Message.Role.ASSISTANT)
    named = by_name(spans)
    (answer,) = named["ragapp.answer"]
    assert answer.attributes["ragapp.stream"] is True
    assert answer.attributes["ragapp.decision"] == message.decision
    (request,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert answer.parent.span_id == request.context.span_id
    assert answer.end_time > request.end_time  # generated after the view returned
    for step in ("ragapp.answer.generate", "ragapp.llm.attempt", "ragapp.answer.gate"):
        assert hex_trace(named[step][0]) == message.trace_id


def test_an_answer_from_the_cache_records_the_hit_and_no_generation(
    client_for, alice, small_kb, chain, spans
):
    chain("gpt-4o")
    client = client_for(alice)
    ask(client)
    spans.clear()
    ask(client)
    cached = Message.objects.filter(role=Message.Role.ASSISTANT).latest("id")
    named = by_name(spans)
    assert named["ragapp.answer.cache"][0].attributes["ragapp.hit"] == "exact"
    assert "ragapp.answer.generate" not in named
    assert named["ragapp.answer"][0].attributes["ragapp.cache"] == "exact"
    assert cached.cache == "exact"
    assert cached.trace_id == hex_trace(named["ragapp.answer"][0])


def test_stored_spans_render_as_a_waterfall_for_staff_and_404_for_everyone_else(
    client, client_for, alice, bob, carol, mallory, small_kb, chain, spans
):
    chain("gpt-4o")
    ask(client_for(alice))
    message = Message.objects.get(role=Message.Role.ASSISTANT)
    assert spans_store(spans.get_finished_spans()) > len(ANSWER_STEPS)
    url = f"/ops/traces/{message.trace_id}/"
    for staff in (bob, carol):
        client.force_login(staff)
        page = client.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        for step in ANSWER_STEPS:
            assert f'data-span="{step}"' in html
        assert html.count('class="bar-span"') >= len(ANSWER_STEPS)
        assert "style=" not in html and "<script" not in html  # the CSP allows neither
        assert f"#{message.id}" in html
    for outsider in (alice, mallory):
        client.force_login(outsider)
        assert client.get(url).status_code == 404
    client.logout()
    assert client.get(url).status_code == 404
    client.force_login(bob)
    assert client.get(f"/ops/traces/{'0' * 32}/").status_code == 404


def test_the_message_admin_and_the_review_queue_link_to_the_trace(
    client, alice, bob, small_kb, chain
):
    from django.test import Client

    chain("gpt-4o")
    api = Client()
    api.force_login(alice)
    assert api.post("/api/v1/ask", {"question": QUESTION}, "application/json").status_code == 200
    message = Message.objects.get(role=Message.Role.ASSISTANT)
    Message.objects.filter(id=message.id).update(decision=Message.Decision.ESCALATED)
    client.force_login(bob)
    link = f'href="/ops/traces/{message.trace_id}/"'
    assert link in client.get(f"/admin/agent/message/{message.id}/change/").content.decode()
    assert link in client.get("/admin/agent/escalatedmessage/").content.decode()


def test_log_lines_carry_trace_user_conversation_and_prompt_version(
    client_for, alice, small_kb, chain, caplog
):
    chain("gpt-4o")
    caplog.handler.addFilter(ContextFilter())
    with caplog.at_level(logging.INFO, logger="agent"):
        ask(client_for(alice))
    message = Message.objects.get(role=Message.Role.ASSISTANT)
    (answered,) = [r for r in caplog.records if r.getMessage() == "answered"]
    assert answered.trace_id == message.trace_id
    assert re.fullmatch(r"[0-9a-f]{16}", answered.span_id)
    assert answered.user == str(alice.pk)
    assert answered.conversation == str(message.conversation_id)
    assert answered.prompt_version == f"{message.prompt_id}@{message.prompt_version}"
    # every line of the turn once its prompt is chosen, not only the ones that pass it along
    in_turn = [r for r in caplog.records if getattr(r, "prompt_version", "")]
    assert len(in_turn) > 1 and all(r.prompt_hash == message.prompt_hash for r in in_turn)
    assert len(answered.request_id) == 32
