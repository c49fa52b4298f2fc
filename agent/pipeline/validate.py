"""Citation validation: every claim must cite passages retrieved for this question, and a cited
passage must actually support it.

Support is measured deterministically, without a model call:

- ``similarity``: the best cosine similarity between the claim and a sentence of the passage
  (embeddings from the embedder, passed in as ``embed``);
- ``overlap``: the share of the claim's content words (stop words dropped, crude stemming) that
  the passage contains.

``support = (similarity + overlap) / 2``. A claim is kept when at least one cited passage reaches
``support_min``; citations to passages that do not support it are dropped from the claim. A claim
stating a number that none of its passages contains is never supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.pipeline.schema import AnswerOut, ClaimOut
from agent.providers.protocols import Passage
from retrieval.pipeline.text import split_sentences, tokenize

Embed = Callable[[list[str]], np.ndarray]  # texts -> unit vectors, one row each

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
STEM_CHARS = 6  # "links"/"link", "expired"/"expire" compare equal; crude, but deterministic


@dataclass(frozen=True)
class Removed:
    claim: ClaimOut
    reason: str  # "no citation", "cites unknown passage(s) [7]", "unsupported"
    score: float | None = None


@dataclass(frozen=True)
class ValidatedAnswer:
    claims: list[ClaimOut]
    removed: list[Removed] = field(default_factory=list)
    support: list[float] = field(default_factory=list)  # per kept claim, its best passage's score

    @property
    def unsupported_share(self) -> float:
        total = len(self.claims) + len(self.removed)
        return len(self.removed) / total if total else 0.0


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word.rstrip("e")[:STEM_CHARS] if len(word) > 3 else word


def _stems(text: str) -> set[str]:
    return {_stem(token) for token in tokenize(text)}


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def word_overlap(claim: str, passage: str) -> float:
    """The share of the claim's content words the passage contains (1.0 for no content words)."""
    words = _stems(claim)
    return len(words & _stems(passage)) / len(words) if words else 1.0


def support_scores(claim: str, passages: list[Passage], embed: Embed) -> dict[int, float]:
    """``{passage number: support}`` of ``claim`` by each passage, in [0, 1]."""
    sentences = [(p.number, s) for p in passages for s in split_sentences(p.text)]
    if not sentences:
        return {p.number: 0.0 for p in passages}
    vectors = embed([claim, *(s for _, s in sentences)])
    sims = vectors[1:] @ vectors[0]
    best: dict[int, float] = {}
    for (number, _), sim in zip(sentences, sims, strict=True):
        best[number] = max(best.get(number, -1.0), float(sim))
    claim_numbers = _numbers(claim)
    scores = {}
    for p in passages:
        if claim_numbers - _numbers(p.text):
            scores[p.number] = 0.0  # states a figure the passage does not
            continue
        similarity = min(max(best.get(p.number, 0.0), 0.0), 1.0)
        scores[p.number] = round((similarity + word_overlap(claim, p.text)) / 2, 4)
    return scores


def citations_validate(
    answer: AnswerOut, *, passages: list[Passage], embed: Embed, support_min: float
) -> ValidatedAnswer:
    """Keep the claims whose citations all map to retrieved passages and that a cited passage
    supports; each kept claim cites only its supporting passages. Report the others."""
    by_number = {p.number: p for p in passages}
    kept: list[ClaimOut] = []
    removed: list[Removed] = []
    support: list[float] = []
    for claim in answer.claims:
        unknown = sorted(set(claim.passages) - set(by_number))
        if not claim.text.strip():
            removed.append(Removed(claim, "empty claim"))
        elif not claim.passages:
            removed.append(Removed(claim, "no citation"))
        elif unknown:
            removed.append(Removed(claim, f"cites unknown passage(s) {unknown}"))
        else:
            cited = [by_number[n] for n in dict.fromkeys(claim.passages)]
            scores = support_scores(claim.text, cited, embed)
            supporting = [n for n, score in scores.items() if score >= support_min]
            best = max(scores.values())
            if supporting:
                kept.append(ClaimOut(text=claim.text, passages=supporting))
                support.append(best)
            else:
                removed.append(Removed(claim, "unsupported", best))
    return ValidatedAnswer(claims=kept, removed=removed, support=support)
