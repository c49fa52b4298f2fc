"""The LLM judge through the real OpenAI-protocol provider, against the loopback server."""

from __future__ import annotations

import pytest

from agent.providers.openai import OpenAIChatModel
from evals.cases import Case
from evals.graders import Reply, Retrieved
from evals.judge import judge_grade, judge_prompt_load
from tests.support.openai_server import ok, status

pytestmark = [pytest.mark.integration]

CASE = Case(id="c", category="answerable", question="How much is Pro?", expect="answered")
REPLY = Reply(text="Pro costs $8 per user per month. [1]", decision="answered", citations=[])
RETRIEVED = [Retrieved(chunk_id=1, document_id="d", file="billing.html", text="Pro is $8.")]


def test_the_judge_sends_its_own_prompt_and_reads_the_verdict(openai_server):
    openai_server.script(
        ok(
            {
                "decision": "refuse",
                "confidence": 0.7,
                "claims": [{"text": "wrong", "passages": [1]}],
            }
        )
    )
    judge = OpenAIChatModel(model="judge-model", base_url=openai_server.url, max_attempts=1)
    grade = judge_grade(
        judge, prompt=judge_prompt_load(), case=CASE, reply=REPLY, retrieved=RETRIEVED
    )
    assert grade.passed is False and grade.reasons == ("judge: refuse", "wrong")
    system, user = openai_server.requests[0].messages
    assert system["content"].startswith("You grade the reply")
    assert "assistant: Pro costs $8 per user per month. [1]" in user["content"]
    assert "Pro is $8." in user["content"]


def test_a_judge_server_error_leaves_the_case_ungraded_by_the_judge(openai_server):
    openai_server.script(status(400))
    judge = OpenAIChatModel(model="judge-model", base_url=openai_server.url, max_attempts=1)
    grade = judge_grade(
        judge, prompt=judge_prompt_load(), case=CASE, reply=REPLY, retrieved=RETRIEVED
    )
    assert grade.passed is None and grade.reasons[0].startswith("judge unavailable")
