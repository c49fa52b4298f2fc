"""A faster CPU embedder (``RAGAPP_EMBEDDER=onnx``): the same sentence-transformers folder
exported to ONNX and quantized to int8, run by ONNX Runtime one text at a time (no padding).

The export runs once, locally, from the packaged weights (a few seconds; nothing is downloaded)
and is cached as ``<RAGAPP_DATA_DIR>/models/<model>-<weights digest>-<recipe>.onnx``; a process
that finds the file uses it. Vectors have cosine ~0.99 to the fp32 model's but are not
identical, so this embedder has its own ``name`` (``...-onnx-int8@<digest>``): switching to or
from it re-embeds every chunk, and retrieval never mixes the two (docs/ingestion.md).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np

from retrieval.providers.sentence_transformers import LocalEmbedder, weights_digest

logger = logging.getLogger(__name__)

# What the export does to the weights. Change it whenever the export or quantization changes:
# it is part of the cached file's name and of the embedder's name (so chunks are re-embedded).
RECIPE = "int8pc1"


class OnnxInt8Embedder(LocalEmbedder):
    """all-MiniLM-L6-v2 (or any BERT-like sentence-transformers folder with mean pooling) in
    ONNX Runtime, int8 per-channel weights on the MatMuls."""

    runtime = "onnx-int8"

    def __init__(self, *args: object, cache_dir: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._cache_dir = Path(cache_dir) if cache_dir else None

    @cached_property
    def dim(self) -> int:  # type: ignore[override]
        return int(json.loads((self.path / "config.json").read_text())["hidden_size"])

    @cached_property
    def _session(self):  # type: ignore[no-untyped-def]
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or 0  # 0: one per core
        options.inter_op_num_threads = 1
        with self._lock:
            model_file = self.model_file()
        return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

    @property
    def loaded(self) -> bool:
        return "_session" in vars(self)

    def load(self) -> None:
        _ = self._session

    def model_file(self) -> Path:
        """The quantized model on disk, exported now when it is not there yet."""
        from django.conf import settings

        folder = self._cache_dir or settings.DATA_DIR / "models"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.path.name}-{weights_digest(self.path)}-{RECIPE}.onnx"
        if target.exists():
            return target
        logger.info("exporting the embedder to ONNX int8", extra={"path": str(target)})
        # Private temporary files, renamed into place: processes exporting at the same time
        # (web and worker starting together) never read a half-written model.
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            _export(self.path, fp32)
            _quantize(fp32, int8)
            os.replace(int8, target)
        return target

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One text per run, so nothing is padded: on 600 of the messy corpus's chunks at one
        # thread, 63 chunks/s against 29 in length-sorted batches of 32 (and 36 in batches of 8);
        # torch's best here is 29 (docs/ingestion.md).
        return np.concatenate([self._embed_batch([text]) for text in texts])

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np"
        )
        feeds = {
            "input_ids": encoded["input_ids"].astype(np.int64),
            "attention_mask": encoded["attention_mask"].astype(np.int64),
            "token_type_ids": encoded.get(
                "token_type_ids", np.zeros_like(encoded["input_ids"])
            ).astype(np.int64),
        }
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        # Mean pooling over real tokens, then unit length: what the sentence-transformers
        # folder's pooling and normalize modules do.
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)


def _quantize(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weights on the MatMuls only: cosine ~0.99 to fp32 (per-tensor over every op
    # measured 0.89-0.94 here).
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
    )


def _export(model_path: Path, target: Path) -> None:
    """Export the transformer (without pooling) to ONNX with dynamic batch and length."""
    import torch
    from transformers import AutoModel

    class _Encoder(torch.nn.Module):
        """Keyword arguments for the model: its positional order changes between versions."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_path)).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = _Encoder().eval()
    dummy = tuple(
        torch.ones(1, 8, dtype=torch.long) if i < 2 else torch.zeros(1, 8, dtype=torch.long)
        for i in range(3)
    )
    dynamic = {0: "batch", 1: "sequence"}
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad():
        torch.onnx.export(
            model,
            dummy,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: dynamic for name in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
