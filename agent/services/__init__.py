"""Writes and orchestration of the agent app; see the modules for each part."""

from __future__ import annotations

from agent.services.answering import (
    AnswerOutcome,
    answer_question,
    conversation_get_for_user,
    guardrail_record,
)
from agent.services.feedback import feedback_give
from agent.services.usage import budget_check, cost_usd

__all__ = [
    "AnswerOutcome",
    "answer_question",
    "budget_check",
    "conversation_get_for_user",
    "cost_usd",
    "feedback_give",
    "guardrail_record",
]
