"""Citation validation: every claim must cite passages that were retrieved for this question."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.pipeline.schema import AnswerOut, ClaimOut


@dataclass(frozen=True)
class ValidatedAnswer:
    claims: list[ClaimOut]
    removed: list[tuple[ClaimOut, str]] = field(default_factory=list)


def citations_validate(answer: AnswerOut, *, passage_numbers: set[int]) -> ValidatedAnswer:
    """Keep the claims whose citations all map to retrieved passages; report the others."""
    kept: list[ClaimOut] = []
    removed: list[tuple[ClaimOut, str]] = []
    for claim in answer.claims:
        if not claim.text.strip():
            removed.append((claim, "empty claim"))
        elif not claim.passages:
            removed.append((claim, "no citation"))
        elif not set(claim.passages) <= passage_numbers:
            removed.append(
                (claim, f"cites unknown passage(s) {sorted(set(claim.passages) - passage_numbers)}")
            )
        else:
            kept.append(claim)
    return ValidatedAnswer(claims=kept, removed=removed)
