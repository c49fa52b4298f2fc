"""The optional LLM-as-judge grader, behind the ``ChatModel`` protocol with its own small prompt.

It runs only when a model is configured (``OPENAI_API_KEY`` or ``OPENAI_BASE_URL``); its verdicts
are reported with their agreement rate against the assertion grader, never gated on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from django.conf import settings

from agent.pipeline.prompt import prompt_load
from agent.providers.protocols import ChatModel, ChatRequest, Passage, Prompt, Turn
from evals.cases import Case
from evals.graders import Grade, Reply, Retrieved
from ragapp.errors import ProviderError

logger = logging.getLogger(__name__)

JUDGE_PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
JUDGE_PROMPT = "judge@1"


def judge_prompt_load(ref: str = JUDGE_PROMPT) -> Prompt:
    """``<id>@<version>`` from ``evals/prompts/``, in the agent's prompt-file format."""
    return prompt_load(ref, JUDGE_PROMPT_DIR)


def judge_model_from_settings() -> ChatModel | None:
    """An OpenAI-protocol judge when one is configured, else None (the judge is skipped)."""
    if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        return None
    from agent.providers.openai import OpenAIChatModel

    return OpenAIChatModel(
        # An eval-only knob, so it is read here rather than in the app's settings.
        model=os.environ.get("RAGAPP_JUDGE_MODEL") or settings.RAGAPP_OPENAI_MODEL,
        base_url=settings.OPENAI_BASE_URL or None,
        timeout_s=settings.RAGAPP_OPENAI_TIMEOUT_S,
        max_attempts=settings.RAGAPP_OPENAI_MAX_ATTEMPTS,
    )


def judge_grade(
    model: ChatModel, *, prompt: Prompt, case: Case, reply: Reply, retrieved: list[Retrieved]
) -> Grade:
    """Ask the judge whether the reply is acceptable; an unavailable judge does not grade."""
    passages = [
        Passage(
            number=i,
            chunk_id=r.chunk_id,
            text=r.text,
            title=r.file,
            page=None,
            heading="",
            score=0.0,
        )
        for i, r in enumerate(retrieved, start=1)
    ]
    history = [Turn(role="user", text=q) for q in case.history]
    history += [Turn(role="user", text=case.question), Turn(role="assistant", text=reply.text)]
    request = ChatRequest(
        question=case.question,
        passages=passages,
        prompt=prompt,
        history=history,
        idempotency_key=f"eval-judge-{case.id}",
    )
    try:
        result = model.generate(request)
    except ProviderError as exc:
        logger.warning("judge unavailable", extra={"case": case.id, "code": exc.code})
        return Grade(passed=None, reasons=(f"judge unavailable ({exc.code})",))
    verdict = result.answer.decision
    reasons = tuple(claim.text for claim in result.answer.claims)
    return Grade(
        passed=verdict == "answer",
        reasons=() if verdict == "answer" else (f"judge: {verdict}", *reasons),
        detail={"verdict": verdict, "confidence": result.answer.confidence, "model": result.model},
    )
