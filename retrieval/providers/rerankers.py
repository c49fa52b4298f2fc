"""Rerankers: the embedded default (hybrid scores), a sentence-level embedder reranker, and a
cross-encoder loaded from a local folder."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from retrieval.pipeline.rerank import hybrid_scores
from retrieval.pipeline.text import is_statement, split_sentences
from retrieval.providers.protocols import Candidate, Embedder


class HybridReranker:
    """The embedded default: blends each candidate's dense similarity and BM25 score.

    The service gives every fused candidate both scores (its stored vector against the query,
    and its BM25 score), so this costs no model call: about a millisecond for 100 candidates.
    With ``prf_depth`` > 0 it then applies pseudo-relevance feedback on the dense side: the
    query moves towards the centroid of the first pass's ``prf_depth`` best candidates (their
    stored vectors), and the blend is computed again. Weights as tuned on SciFact train; see
    docs/retrieval.md. Higher is better; with "max" or "minmax" normalisation the score is at
    most 1, with "z" it is squashed into (0, 1).
    """

    name = "hybrid"

    def __init__(
        self,
        *,
        dense_weight: float = 0.6,
        norm: str = "max",
        prf_depth: int = 0,
        prf_weight: float = 0.0,
    ):
        self.dense_weight = dense_weight
        self.norm = norm
        self.prf_depth = prf_depth
        self.prf_weight = prf_weight
        self.needs_vectors = bool(prf_depth and prf_weight)  # stored vectors for feedback

    def rerank(self, query: str, candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            return candidates
        dense = np.array([c.scores.get("dense", 0.0) for c in candidates])
        bm25 = np.array([c.scores.get("bm25", 0.0) for c in candidates])
        scores = np.asarray(
            hybrid_scores(dense, bm25, dense_weight=self.dense_weight, norm=self.norm)
        )
        vectors = [c.embedding for c in candidates]
        if self.prf_depth and self.prf_weight and all(v is not None for v in vectors):
            matrix = np.stack(vectors)  # type: ignore[arg-type]
            top = np.argsort(-scores, kind="stable")[: self.prf_depth]
            feedback = matrix @ matrix[top].mean(axis=0)
            scores = np.asarray(
                hybrid_scores(
                    dense + self.prf_weight * feedback,
                    bm25,
                    dense_weight=self.dense_weight,
                    norm=self.norm,
                )
            )
        if self.norm == "z":  # a logistic squash keeps the order and gives a score in (0, 1)
            scores = 1.0 / (1.0 + np.exp(-scores))
        for c, score in zip(candidates, scores, strict=True):
            c.scores["rerank"] = float(score)
        return sorted(candidates, key=lambda c: -c.scores["rerank"])


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
            c.scores["dense"]
            if "dense" in c.scores
            else float(c.embedding @ q)
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
