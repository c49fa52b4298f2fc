"""The batch lane against the loopback OpenAI server's Batch API (files, batches, output file),
through the real openai SDK: answers stored like chat answers, billed at the batch price."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from agent.models import Message, UsageRecord
from agent.services.batch import questions_batch, questions_read
from tests.support.openai_server import ok, status

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

CLAIM = "Password reset links expire after 30 minutes."
ANSWER = {"decision": "answer", "confidence": 0.9, "claims": [{"text": CLAIM, "passages": [1]}]}
BATCH = {"RAGAPP_BATCH_POLL_S": 0.05, "RAGAPP_BATCH_TIMEOUT_S": 30}
FULL_PRICE = (1000 * 2.50 + 50 * 10.00) / 1e6  # gpt-4o


def rows(*questions: str) -> list[dict[str, str]]:
    return questions_read(io.StringIO("\n".join(json.dumps({"question": q}) for q in questions)))


def test_questions_go_through_one_batch_and_are_stored_like_answers_at_half_price(
    alice, small_kb, chain
):
    server = chain("gpt-4o", **BATCH)
    server.script(ok(ANSWER, usage=(1000, 50)), ok(usage=(1000, 50)))

    outcomes = questions_batch(
        user=alice,
        rows=rows("How long is a password reset link valid?", "How much does the Pro plan cost?"),
    )

    assert [o.message.decision for o in outcomes] == ["answered", "answered"]
    assert outcomes[0].message.text == f"{CLAIM} [1]" and outcomes[0].message.citations
    assert not any(o.message.degraded for o in outcomes)
    [batch] = server.batches.values()
    assert batch["request"]["endpoint"] == "/v1/chat/completions" and batch["polls"] >= 2
    uploaded = [json.loads(line) for line in server.files["file-1"].decode().splitlines()]
    assert [line["body"]["model"] for line in uploaded] == ["gpt-4o", "gpt-4o"]
    assert all(r.path == "/v1/chat/completions" for r in server.requests)  # no inline call
    records = UsageRecord.objects.order_by("id")
    assert [(r.route, r.model, r.succeeded) for r in records] == [("batch", "gpt-4o", True)] * 2
    assert float(records[0].cost_usd) == pytest.approx(FULL_PRICE * 0.5)
    assert outcomes[0].usage["cost_usd"] == pytest.approx(FULL_PRICE * 0.5)
    assert Message.objects.filter(role="user").count() == 2


def test_a_failed_batch_line_is_answered_inline_and_its_failure_is_recorded(alice, small_kb, chain):
    server = chain("gpt-4o", **BATCH)
    server.script(status(500), ok(ANSWER, usage=(1000, 50)))

    [outcome] = questions_batch(user=alice, rows=rows("How long is a password reset link valid?"))

    assert (outcome.message.decision, outcome.message.degraded) == ("answered", False)
    assert [(r.route, r.error_code or "ok") for r in UsageRecord.objects.order_by("id")] == [
        ("batch", "http_500"),
        ("answer.easy", "ok"),
    ]
    assert float(UsageRecord.objects.get(error_code="").cost_usd) == pytest.approx(FULL_PRICE)


def test_without_a_batch_endpoint_the_extractive_answerer_answers_inline(alice, small_kb, chain):
    chain("gpt-4o", **BATCH)
    from django.test import override_settings

    from agent.providers.registry import chat_models

    with override_settings(RAG_CHAT_MODELS=[{"KIND": "extractive", "OPTIONS": {}}]):
        chat_models.cache_clear()
        [outcome] = questions_batch(
            user=alice, rows=rows("How long is a password reset link valid?")
        )
    chat_models.cache_clear()

    assert outcome.message.decision == "answered" and outcome.message.provider == "extractive"
    assert "30 minutes" in outcome.message.text
    assert [r.route for r in UsageRecord.objects.all()] == ["answer.easy"]


def test_the_command_reads_a_jsonl_file_and_prints_each_answer(alice, small_kb, chain, tmp_path):
    chain("gpt-4o", **BATCH)
    path = tmp_path / "questions.jsonl"
    path.write_text('{"question": "How long is a password reset link valid?"}\n\n')
    out = io.StringIO()

    call_command("questions_batch", str(path), "--user", alice.username, stdout=out)

    assert "answered" in out.getvalue() and "1 questions answered" in out.getvalue()
    assert UsageRecord.objects.get().route == "batch"
