"""The confidence gate: answer, hand to a person, or refuse."""

from __future__ import annotations

from typing import Literal

Decision = Literal["answered", "escalated", "refused"]


def gate_decide(
    *,
    model_decision: str,
    confidence: float,
    has_claims: bool,
    answer_at: float,
    escalate_at: float,
) -> Decision:
    """``answer_at`` and ``escalate_at`` are the confidence thresholds (settings)."""
    if model_decision == "refuse" or (not has_claims and model_decision != "escalate"):
        return "refused"
    if model_decision == "escalate" or not has_claims:
        return "escalated"
    if confidence >= answer_at:
        return "answered"
    if confidence >= escalate_at:
        return "escalated"
    return "refused"
