"""Rows with known values for the dashboard and drift tests: turns, usage, feedback, profiles.

Timestamps are ``auto_now_add``, so each builder moves its rows to the wanted time afterwards.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from agent.models import Conversation, Message, QuestionProfile, UsageRecord


def at(model: Any, pk: Any, when: datetime) -> None:
    model.objects.filter(pk=pk).update(created_at=when)


def turn(
    user: Any,
    when: datetime,
    *,
    question: str = "How long is a password reset link valid?",
    decision: str = "answered",
    text: str = "Links expire after 30 minutes [1].",
    latency_ms: int = 500,
    cost: str | None = None,
    model: str = "gpt-4o-mini",
    route: str = "answer.easy",
    cache: str = "",
    degraded: bool = False,
    prompt_version: str = "1",
    trace: dict[str, Any] | None = None,
    conversation: Conversation | None = None,
    ask: bool = True,
) -> Message:
    """One question and its answer at ``when``, with one usage record when ``cost`` is given.
    ``ask=False`` stores only the answer (no question to profile)."""
    conversation = conversation or Conversation.objects.create(user=user, title=question[:80])
    if ask:
        asked = Message.objects.create(conversation=conversation, role="user", text=question)
        at(Message, asked.pk, when)
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text=text,
        decision=decision,
        latency_ms=latency_ms,
        cache=cache,
        degraded=degraded,
        prompt_id="grounded_answer",
        prompt_version=prompt_version,
        trace=trace or {},
    )
    at(Message, answer.pk, when)
    if cost is not None:
        usage(user, when, cost=cost, model=model, route=route, conversation=conversation)
    return answer


def usage(
    user: Any,
    when: datetime,
    *,
    cost: str,
    model: str = "gpt-4o-mini",
    route: str = "answer.easy",
    input_tokens: int = 100,
    output_tokens: int = 20,
    succeeded: bool = True,
    error_code: str = "",
    provider: str = "openai",
    conversation: Conversation | None = None,
) -> UsageRecord:
    record = UsageRecord.objects.create(
        provider=provider,
        model=model,
        route=route,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=Decimal(cost),
        succeeded=succeeded,
        error_code=error_code,
        conversation=conversation,
        user=user,
    )
    at(UsageRecord, record.pk, when)
    return record


def profile(
    user: Any, when: datetime, *, vector: list[float], best_match: float, language: str = "en"
) -> QuestionProfile:
    """A question asked at ``when`` with a ready profile (the drift check will not re-embed it)."""
    conversation = Conversation.objects.create(user=user, title="q")
    asked = Message.objects.create(conversation=conversation, role="user", text="q")
    at(Message, asked.pk, when)
    padded = np.zeros(384, dtype=np.float32)
    padded[: len(vector)] = vector
    return QuestionProfile.objects.create(
        message=asked,
        embedding=padded,
        embedding_model="test",
        best_match=best_match,
        language=language,
    )
