"""BM25 over chunk texts: ``bm25s`` (the default, sparse matrices) and ``rank-bm25`` (reference).

Both take ``(chunk id, collection id, text)`` rows and apply a collection filter before ranking:
chunks outside the caller's collections are masked out, never ranked and then dropped, so a
filter that excludes most chunks still returns the best matching allowed ones.
See docs/retrieval.md for why bm25s is the default.
"""

from __future__ import annotations

import numpy as np

from retrieval.pipeline.text import lexical_terms

Row = tuple[int, int, str]


def _top(scores: np.ndarray, ids: np.ndarray, limit: int) -> list[tuple[int, float]]:
    """The ``limit`` best positive scores as ``(id, score)``, best first, ties by position."""
    if limit <= 0 or not len(scores):
        return []
    if limit < len(scores):
        kth = np.partition(scores, len(scores) - limit)[len(scores) - limit]
        part = np.flatnonzero(scores >= kth)  # every tie at the cut, so the order is stable
        top = part[np.lexsort((part, -scores[part]))][:limit]
    else:
        top = np.argsort(-scores, kind="stable")
    return [(int(ids[i]), float(scores[i])) for i in top if scores[i] > 0.0]


class BM25SIndex:
    """BM25 (Lucene variant) in a precomputed sparse term x chunk matrix (``bm25s``).

    A query reads only the columns of its terms, so it costs milliseconds at 100k+ chunks, and
    ``score_ids`` gives the exact BM25 score of any indexed chunk (the reranker uses it for
    candidates that came from dense search alone).
    """

    def __init__(self, rows: list[Row], *, k1: float = 1.2, b: float = 0.75, stem: bool = True):
        import bm25s

        self.k1, self.b, self.stem = k1, b, stem
        self.ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.collections = np.array([r[1] for r in rows], dtype=np.int64)
        self._position = {int(cid): i for i, cid in enumerate(self.ids)}
        self._alive = np.ones(len(rows), dtype=np.float32)
        self._last: tuple[str, np.ndarray | None] | None = None
        self._bm25 = None
        if rows:
            self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
            corpus = [lexical_terms(r[2], stem=stem) or [""] for r in rows]
            self._bm25.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def _scores(self, query: str) -> np.ndarray | None:
        last = self._last  # a search then score_ids for the same query: score once
        if last is not None and last[0] == query:
            return last[1]
        if self._bm25 is None:
            return None
        term_ids = self._bm25.get_tokens_ids(lexical_terms(query, stem=self.stem))
        term_ids = [t for t in term_ids if t != self._bm25.vocab_dict.get("")]
        scores = self._bm25.get_scores_from_ids(term_ids) if term_ids else None
        self._last = (query, scores)
        return scores

    def search(
        self, query: str, *, collection_ids: list[int] | None, limit: int
    ) -> list[tuple[int, float]]:
        scores = self._scores(query)
        if scores is None:
            return []
        scores = scores * self._alive
        if collection_ids is not None:
            scores = scores * np.isin(self.collections, collection_ids)
        return _top(scores, self.ids, limit)

    def score_ids(self, query: str, chunk_ids: list[int]) -> dict[int, float]:
        """BM25 scores of the given chunks (0.0 for chunks not in the index)."""
        scores = self._scores(query)
        positions = [self._position.get(cid) for cid in chunk_ids]
        return {
            cid: (float(scores[p]) if scores is not None and p is not None else 0.0)
            for cid, p in zip(chunk_ids, positions, strict=True)
        }

    def forget(self, chunk_ids: list[int]) -> None:
        """Stop returning chunks found to be deleted (until the next rebuild drops them)."""
        for cid in chunk_ids:
            if (p := self._position.get(cid)) is not None:
                self._alive[p] = 0.0


class RankBM25Index:
    """``rank-bm25`` (BM25Okapi): scores every chunk per query; kept as the reference engine."""

    def __init__(self, rows: list[Row], *, stem: bool = True):
        from rank_bm25 import BM25Okapi

        self.stem = stem
        self.ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.collections = np.array([r[1] for r in rows], dtype=np.int64)
        corpus = [lexical_terms(r[2], stem=stem) or ["\x00"] for r in rows]
        self._bm25 = BM25Okapi(corpus) if rows else None

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, *, collection_ids: list[int] | None, limit: int
    ) -> list[tuple[int, float]]:
        terms = lexical_terms(query, stem=self.stem)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        if collection_ids is not None:
            scores = np.where(np.isin(self.collections, collection_ids), scores, 0.0)
        return _top(scores, self.ids, limit)
