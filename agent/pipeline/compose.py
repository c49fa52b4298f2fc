"""Turns validated claims into the text the user reads, with citation markers [1], [2] ..."""

from __future__ import annotations

from dataclasses import dataclass

from agent.pipeline.schema import ClaimOut
from agent.providers.protocols import Passage

REFUSAL = "I don't have that in the documentation."
ESCALATION = (
    "I'm not confident the documentation answers this fully, so I've passed your question to a "
    "person who will follow up."
)


@dataclass(frozen=True)
class Composed:
    text: str
    cited: list[tuple[int, Passage]]  # (number shown to the user, passage), in order of use


def answer_compose(claims: list[ClaimOut], passages: list[Passage]) -> Composed:
    """Number citations by first use, so the reader sees [1], [2] ... in order."""
    by_number = {p.number: p for p in passages}
    shown: dict[int, int] = {}
    sentences = []
    for claim in claims:
        markers = []
        for n in claim.passages:
            if n not in shown:
                shown[n] = len(shown) + 1
            markers.append(f"[{shown[n]}]")
        sentences.append(f"{claim.text.strip()} {''.join(dict.fromkeys(markers))}")
    cited = [(label, by_number[n]) for n, label in shown.items()]
    return Composed(text=" ".join(sentences), cited=cited)


def refusal_text(topics: list[str]) -> str:
    if not topics:
        return f"{REFUSAL} No documents have been added yet."
    return f"{REFUSAL} The documentation covers: {', '.join(topics)}."
