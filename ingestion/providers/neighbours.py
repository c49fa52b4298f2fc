"""Nearest neighbours over the embedder's sentence vectors: a sentence scores by how much closer
it lies to known prompts for a chatbot than to known document sentences.

The reference vectors (float16) and the threshold are made by ``manage.py
train_instruction_classifier`` from the train splits alone and committed beside this module.
Scoring embeds each judged sentence once (the embedder's sentence cache) and compares it with
the references: a few milliseconds for a chunk's sentences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

VECTORS = Path(__file__).with_name("instruction-classifier.npz")
META = VECTORS.with_suffix(".json")


def neighbour_scores(
    vectors: np.ndarray, positives: np.ndarray, negatives: np.ndarray, *, k: int, scale: float
) -> np.ndarray:
    """sigmoid(scale * (mean cosine of the k nearest positives - that of the k nearest
    negatives)) per row of ``vectors`` (unit length, as the references are)."""
    near_pos = _top_k_mean(vectors @ positives.T, k)
    near_neg = _top_k_mean(vectors @ negatives.T, k)
    return 1.0 / (1.0 + np.exp(-scale * (near_pos - near_neg)))  # type: ignore[no-any-return]


def _top_k_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    k = min(k, similarities.shape[1])
    return np.partition(similarities, -k, axis=1)[:, -k:].mean(axis=1)  # type: ignore[no-any-return]


class NeighbourInstructionClassifier:
    def __init__(self, embedder: Any, meta: dict[str, Any], *, threshold: float = 0.0):
        self.embedder = embedder
        with np.load(VECTORS) as stored:
            self.positives = stored["positives"].astype(np.float32)
            self.negatives = stored["negatives"].astype(np.float32)
        self.k = int(meta["k"])
        self.scale = float(meta["scale"])
        self.threshold = threshold or float(meta["threshold"])
        self.name = f"neighbours@{meta['trained_at']}"
        if self.positives.shape[1] != embedder.dim:
            raise ValueError(
                f"classifier vectors have {self.positives.shape[1]} dimensions, "
                f"the embedder {embedder.dim}"
            )

    def scores(self, pieces: list[str]) -> list[float]:
        if not pieces:
            return []
        vectors = self.embedder.embed_sentences(pieces)
        found = neighbour_scores(
            vectors, self.positives, self.negatives, k=self.k, scale=self.scale
        )
        return [float(s) for s in found]


def meta_load(path: Path = META) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
