"""Embeddings cached on disk, keyed by model name and text hash, so benchmark reruns are fast."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

import numpy as np

from retrieval.providers.protocols import Embedder

logger = logging.getLogger(__name__)


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    """Append-only shards of ``(key, vector)`` under ``folder/<model name>/``."""

    def __init__(self, folder: Path, embedder: Embedder, *, shard_size: int = 512):
        self.embedder = embedder
        self.folder = folder / re.sub(r"[^\w.@-]+", "_", embedder.name)
        self.shard_size = shard_size
        self._vectors: dict[str, np.ndarray] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        for shard in sorted(self.folder.glob("*.npz")):
            with np.load(shard) as data:
                for key, vector in zip(data["keys"], data["vectors"], strict=True):
                    self._vectors[str(key)] = vector

    def embed(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        """Vectors for ``texts``, embedding (and storing) only the ones not seen before."""
        keys = [text_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._vectors))
        if missing:
            by_key = dict(zip(keys, texts, strict=True))
            # Similar lengths in one batch waste less padding.
            missing.sort(key=lambda k: len(by_key[k]))
            started = time.perf_counter()
            for start in range(0, len(missing), self.shard_size):
                part = missing[start : start + self.shard_size]
                batch = [by_key[k] for k in part]
                vectors = (
                    np.stack([self.embedder.embed_query(t) for t in batch])
                    if query
                    else self.embedder.embed_documents(batch)
                )
                self._save(part, vectors)
                done = min(start + self.shard_size, len(missing))
                logger.info(
                    "embedded %d/%d texts (%.0f s)",
                    done,
                    len(missing),
                    time.perf_counter() - started,
                )
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def _save(self, keys: list[str], vectors: np.ndarray) -> None:
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        np.savez(self.folder / f"{name}.npz", keys=np.array(keys), vectors=vectors)
        for key, vector in zip(keys, vectors, strict=True):
            self._vectors[key] = vector
