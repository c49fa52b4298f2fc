"""Rerankers: the embedded default and a cross-encoder loaded from a local folder."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from retrieval.pipeline.text import is_statement, split_sentences
from retrieval.providers.protocols import Candidate, Embedder


class SentenceReranker:
    """Scores the question against each sentence of a candidate with the packaged embedder.

    A passage whose best sentence matches the question closely rises, even when the passage as
    a whole is about something broader. The final score blends the best sentence similarity with
    the whole-passage similarity; candidates beyond ``depth`` keep their fused order below.
    """

    name = "sentence"

    def __init__(
        self,
        embedder: Embedder,
        *,
        depth: int = 10,
        max_sentences: int = 12,
        sentence_weight: float = 0.6,
    ):
        self.embedder = embedder
        self.depth = depth
        self.max_sentences = max_sentences
        self.sentence_weight = sentence_weight

    def rerank(self, query: str, candidates: list[Candidate]) -> list[Candidate]:
        head, tail = candidates[: self.depth], candidates[self.depth :]
        if not head:
            return candidates
        q = self.embedder.embed_query(query)
        per_candidate = [
            [s for s in split_sentences(c.text) if is_statement(s)][: self.max_sentences]
            or [c.text]
            for c in head
        ]
        flat = [s for sentences in per_candidate for s in sentences]
        sims = self.embedder.embed_sentences(flat) @ q  # type: ignore[attr-defined]
        passage_sims = [
            float(c.embedding @ q)
            if c.embedding is not None
            else float(self.embedder.embed_query(c.text) @ q)
            for c in head
        ]
        start = 0
        for candidate, sentences, passage_sim in zip(
            head, per_candidate, passage_sims, strict=True
        ):
            best = float(np.max(sims[start : start + len(sentences)]))
            start += len(sentences)
            w = self.sentence_weight
            candidate.scores["rerank"] = w * best + (1 - w) * float(passage_sim)
        head.sort(key=lambda c: -c.scores["rerank"])
        floor = min(c.scores["rerank"] for c in head)
        for c in tail:
            c.scores["rerank"] = floor - 1.0  # below every reranked candidate, order kept
        return head + tail


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` from a local folder, e.g. ms-marco-MiniLM-L-6-v2."""

    name = "cross_encoder"

    def __init__(self, path: str, *, depth: int = 50):
        self.path = path
        self.depth = depth

    @cached_property
    def _model(self):  # type: ignore[no-untyped-def]
        from sentence_transformers import CrossEncoder

        return CrossEncoder(self.path, device="cpu")

    def rerank(self, query: str, candidates: list[Candidate]) -> list[Candidate]:
        head, tail = candidates[: self.depth], candidates[self.depth :]
        if not head:
            return candidates
        scores = self._model.predict([(query, c.text) for c in head], convert_to_numpy=True)
        probs = 1.0 / (1.0 + np.exp(-np.asarray(scores, dtype=np.float64)))
        for c, p in zip(head, probs, strict=True):
            c.scores["rerank"] = float(p)
        head.sort(key=lambda c: -c.scores["rerank"])
        for c in tail:
            c.scores["rerank"] = -1.0
        return head + tail
