"""The router: easy questions to a cheap model, hard ones to the flagship. Rules only, so the
decision is instant, free and explainable (its reason is stored with the answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.providers.protocols import Passage

Route = Literal["easy", "hard"]

# Words that ask for reasoning across facts rather than one fact.
HARD_WORDS = frozenset(
    "compare comparison difference differences versus vs why explain tradeoff trade-off "
    "pros cons migrate troubleshoot".split()
)


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    reason: str


def route_decide(
    *,
    question: str,
    passages: list[Passage],
    document_titles: list[str],
    depth: int,
    max_words: int,
    max_depth: int,
    max_documents: int,
) -> RouteDecision:
    """``depth`` is the number of earlier turns; ``document_titles`` one per passage."""
    words = question.split()
    if len(words) > max_words:
        return RouteDecision("hard", f"long question ({len(words)} words)")
    if depth >= max_depth:
        return RouteDecision("hard", f"deep conversation ({depth} earlier turns)")
    asks = sorted({w.strip("?,.!;:").lower() for w in words} & HARD_WORDS)
    if asks:
        return RouteDecision("hard", f"asks for reasoning ({', '.join(asks)})")
    top = passages[0].score if passages else 0.0
    # Passages needed: those scoring close to the best one; spread over many documents is hard.
    needed = {t for p, t in zip(passages, document_titles, strict=True) if p.score >= 0.8 * top}
    if len(needed) >= max_documents:
        return RouteDecision("hard", f"needs passages from {len(needed)} documents")
    return RouteDecision("easy", "short single-topic question")
