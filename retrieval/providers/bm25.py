"""BM25 over chunk texts with rank-bm25 (the stack's choice; see README for its scaling limit)."""

from __future__ import annotations

import numpy as np
from rank_bm25 import BM25Okapi

from retrieval.pipeline.text import tokenize


class RankBM25Index:
    """An in-memory BM25 index of ``(chunk id, collection id, text)`` rows.

    It scores every chunk for every query, so a collection filter is exact: chunks outside the
    caller's collections are masked out before ranking, never ranked and dropped.
    """

    def __init__(self, rows: list[tuple[int, int, str]]):
        self.ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.collections = np.array([r[1] for r in rows], dtype=np.int64)
        self._bm25 = BM25Okapi([tokenize(r[2]) or ["\x00"] for r in rows]) if rows else None

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, *, collection_ids: list[int] | None, limit: int
    ) -> list[tuple[int, float]]:
        terms = tokenize(query)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        if collection_ids is not None:
            scores = np.where(np.isin(self.collections, collection_ids), scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:limit]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0.0]
