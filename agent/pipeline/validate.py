"""Citation validation: every claim must cite passages retrieved for this question, and a cited
passage must actually support it.

Support is measured deterministically, without a model call:

- ``similarity``: the best cosine similarity between the claim and a sentence of the passage
  (embeddings from the embedder, passed in as ``embed``);
- ``overlap``: the share of the claim's content words (stop words dropped, crude stemming) that
  the passage contains.

``support = (similarity + overlap) / 2``. A claim that is one of the passage's sentences word
for word scores 1 without an embedding (what the computation gives), and the claims of an answer
are embedded in one batch. A claim is kept when at least one cited passage reaches
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


def _fold(text: str) -> str:
    return " ".join(text.split())


def _quotes(claim: str, passage: Passage) -> bool:
    """The claim is one of the passage's sentences word for word (as the extractive answerer's
    claims are): its best similarity is 1 and every word is there, so support is 1 without an
    embedding."""
    return _fold(claim) in split_sentences(passage.text)


def _texts_to_embed(claim: str, passages: list[Passage]) -> list[str]:
    """What ``support_scores`` embeds: the claim and the sentences of the passages it does not
    quote (nothing when it quotes them all)."""
    sentences = [s for p in passages if not _quotes(claim, p) for s in split_sentences(p.text)]
    return [claim, *sentences] if sentences else []


def support_scores(claim: str, passages: list[Passage], embed: Embed) -> dict[int, float]:
    """``{passage number: support}`` of ``claim`` by each passage, in [0, 1]."""
    if not any(split_sentences(p.text) for p in passages):
        return {p.number: 0.0 for p in passages}
    texts = _texts_to_embed(claim, passages)
    best: dict[int, float] = {p.number: 1.0 for p in passages if _quotes(claim, p)}
    if texts:
        vectors = embed(texts)
        sims = vectors[1:] @ vectors[0]
        numbers = [
            p.number for p in passages if p.number not in best for _ in split_sentences(p.text)
        ]
        for number, sim in zip(numbers, sims, strict=True):
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


def _embed_once(embed: Embed, texts: list[str]) -> Embed:
    """Embed every text in one call (one model batch instead of one per claim); returns a
    lookup with ``embed``'s signature."""
    unique = list(dict.fromkeys(texts))
    table = dict(zip(unique, embed(unique), strict=True)) if unique else {}
    return lambda wanted: np.stack([table[t] for t in wanted])


def citations_validate(
    answer: AnswerOut, *, passages: list[Passage], embed: Embed, support_min: float
) -> ValidatedAnswer:
    """Keep the claims whose citations all map to retrieved passages and that a cited passage
    supports; each kept claim cites only its supporting passages. Report the others."""
    by_number = {p.number: p for p in passages}
    cited: dict[int, list[Passage]] = {}  # claim index -> its passages, for claims to score
    invalid: dict[int, str] = {}
    for i, claim in enumerate(answer.claims):
        unknown = sorted(set(claim.passages) - set(by_number))
        if not claim.text.strip():
            invalid[i] = "empty claim"
        elif not claim.passages:
            invalid[i] = "no citation"
        elif unknown:
            invalid[i] = f"cites unknown passage(s) {unknown}"
        else:
            cited[i] = [by_number[n] for n in dict.fromkeys(claim.passages)]
    texts = [t for i, ps in cited.items() for t in _texts_to_embed(answer.claims[i].text, ps)]
    lookup = _embed_once(embed, texts)
    kept: list[ClaimOut] = []
    removed: list[Removed] = []
    support: list[float] = []
    for i, claim in enumerate(answer.claims):
        if i in invalid:
            removed.append(Removed(claim, invalid[i]))
            continue
        scores = support_scores(claim.text, cited[i], lookup)
        supporting = [n for n, score in scores.items() if score >= support_min]
        best = max(scores.values())
        if supporting:
            kept.append(ClaimOut(text=claim.text, passages=supporting))
            support.append(best)
        else:
            removed.append(Removed(claim, "unsupported", best))
    return ValidatedAnswer(claims=kept, removed=removed, support=support)
