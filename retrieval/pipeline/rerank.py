"""Score combination for reranking: every candidate scored by every retriever, then blended."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NORMS = ("max", "minmax", "z")


def _normalise(values: np.ndarray, norm: str) -> np.ndarray:
    if norm == "max":
        top = values.max()
        return values / top if top > 0 else values
    if norm == "minmax":
        spread = values.max() - values.min()
        return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)
    if norm == "z":
        std = values.std()
        return (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    raise ValueError(f"unknown normalisation {norm!r}; expected one of {NORMS}")


def hybrid_scores(
    dense: Sequence[float], bm25: Sequence[float], *, dense_weight: float, norm: str = "z"
) -> list[float]:
    """``dense_weight * dense' + (1 - dense_weight) * bm25'`` per candidate.

    Each signal is first normalised over the candidate set (``norm``: divide by the maximum,
    min-max to [0, 1], or z-score), because cosine similarity and BM25 live on different scales.
    Unlike rank fusion, a candidate found by only one retriever still gets the other's real score.
    """
    if not len(dense):
        return []
    d = _normalise(np.asarray(dense, dtype=np.float64), norm)
    b = _normalise(np.asarray(bm25, dtype=np.float64), norm)
    return (dense_weight * d + (1.0 - dense_weight) * b).tolist()
