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
    unsupported_share: float = 0.0,
    max_unsupported: float = 1.0,
) -> Decision:
    """``answer_at`` and ``escalate_at`` are the confidence thresholds (settings).

    ``unsupported_share`` is the share of the model's claims removed by citation validation; past
    ``max_unsupported`` the answer is not trusted enough to show and goes to a person.
    """
    if model_decision == "refuse" or (not has_claims and model_decision != "escalate"):
        if unsupported_share > 0 and model_decision != "refuse":
            return "escalated"  # the model answered, but nothing it said was supported
        return "refused"
    if model_decision == "escalate" or not has_claims:
        return "escalated"
    if confidence < escalate_at:
        return "refused"
    if confidence < answer_at or unsupported_share > max_unsupported:
        return "escalated"
    return "answered"
