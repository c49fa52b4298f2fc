from __future__ import annotations

from agent.pipeline.schema import AnswerOut, ClaimOut
from agent.providers.protocols import ChatRequest, ChatResult
from evals.cases import Case
from evals.graders import Reply, Retrieved
from evals.judge import judge_grade, judge_prompt_load
from ragapp.errors import ProviderError

CASE = Case(id="c", category="answerable", question="How long is a link valid?", expect="answered")
REPLY = Reply(text="Links expire after 30 minutes. [1]", decision="answered", citations=[])
RETRIEVED = [Retrieved(chunk_id=1, document_id="d", file="account.md", text="Links expire.")]


class ScriptedJudge:
    """A ChatModel that returns one verdict and records the request it saw."""

    provider = "fake"
    model = "judge-model"

    def __init__(self, decision: str = "answer", error: ProviderError | None = None) -> None:
        self.decision = decision
        self.error = error
        self.requests: list[ChatRequest] = []

    def generate(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        if self.error:
            raise self.error
        claims = [] if self.decision == "answer" else [ClaimOut(text="unsupported", passages=[1])]
        answer = AnswerOut(decision=self.decision, confidence=0.9, claims=claims)  # type: ignore[arg-type]
        return ChatResult(answer=answer, provider="fake", model=self.model, attempts=[])


def test_the_judge_prompt_is_its_own_versioned_file():
    prompt = judge_prompt_load()
    assert (prompt.id, prompt.version) == ("judge", "1")
    assert "{history}" in prompt.user and "{passages}" in prompt.user


def test_the_judge_sees_the_question_the_reply_and_the_retrieved_passages():
    judge = ScriptedJudge()
    grade = judge_grade(
        judge, prompt=judge_prompt_load(), case=CASE, reply=REPLY, retrieved=RETRIEVED
    )
    assert grade.passed and grade.detail["verdict"] == "answer"
    request = judge.requests[0]
    assert request.prompt.id == "judge" and request.question == CASE.question
    assert request.history[-1].text == REPLY.text and request.passages[0].text == "Links expire."


def test_a_judge_that_rejects_the_reply_fails_it_with_its_reasons():
    grade = judge_grade(
        ScriptedJudge("refuse"),
        prompt=judge_prompt_load(),
        case=CASE,
        reply=REPLY,
        retrieved=RETRIEVED,
    )
    assert grade.passed is False and grade.reasons == ("judge: refuse", "unsupported")


def test_an_unavailable_judge_does_not_grade_instead_of_failing_the_case():
    judge = ScriptedJudge(error=ProviderError("down", permanent=False, code="timeout"))
    grade = judge_grade(
        judge, prompt=judge_prompt_load(), case=CASE, reply=REPLY, retrieved=RETRIEVED
    )
    assert grade.passed is None and grade.reasons == ("judge unavailable (timeout)",)
