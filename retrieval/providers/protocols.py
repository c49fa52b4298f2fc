"""Interfaces for embedding and reranking, with typed results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Maps text to unit-length vectors.

    ``name`` identifies the model, its weights and the runtime that produced the vectors: every
    chunk stores it, and retrieval only compares vectors of the same ``name``.
    """

    name: str
    dim: int
    max_tokens: int

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_sentences(self, texts: list[str]) -> np.ndarray:
        """``embed_documents`` with a cache of recent short texts (sentences, questions)."""
        ...

    def count_tokens(self, text: str) -> int: ...


@dataclass
class Candidate:
    """A chunk on its way through retrieval, with the score each stage gave it."""

    chunk_id: int
    document_id: str
    document_title: str
    text: str
    page: int | None
    heading: str
    scores: dict[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, repr=False)  # the stored chunk vector

    @property
    def score(self) -> float:
        return self.scores.get("rerank", self.scores.get("fused", 0.0))


class Reranker(Protocol):
    """Reorders candidates for a query, setting ``scores["rerank"]`` (higher is better)."""

    name: str

    def rerank(self, query: str, candidates: list[Candidate]) -> list[Candidate]: ...


class LexicalIndex(Protocol):
    """Keyword search over a fixed set of chunks."""

    def search(
        self, query: str, *, collection_ids: list[int] | None, limit: int
    ) -> list[tuple[int, float]]: ...
