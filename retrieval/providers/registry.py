"""Builds the embedder and reranker named in settings, once per process."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from retrieval.providers.protocols import Embedder, Reranker

# RAGAPP_EMBEDDER -> class. Each kind names its vectors differently (see Embedder.name).
EMBEDDERS = {
    "torch": "retrieval.providers.sentence_transformers.SentenceTransformerEmbedder",
    "onnx": "retrieval.providers.onnx_embedder.OnnxInt8Embedder",
}


@cache
def embedder() -> Embedder:
    """The embedder of ``RAGAPP_EMBEDDER`` for the ``RAGAPP_EMBEDDING_MODEL`` folder."""
    if settings.RAGAPP_EMBEDDER not in EMBEDDERS:
        raise ImproperlyConfigured(f"unknown RAGAPP_EMBEDDER {settings.RAGAPP_EMBEDDER!r}")
    cls = import_string(EMBEDDERS[settings.RAGAPP_EMBEDDER])
    return cls(  # type: ignore[no-any-return]
        settings.RAGAPP_EMBEDDING_MODEL,
        batch_size=settings.RAGAPP_EMBEDDING_BATCH,
        threads=settings.RAGAPP_EMBEDDER_THREADS,
    )


@cache
def reranker() -> Reranker:
    from retrieval.providers.rerankers import (
        CrossEncoderReranker,
        HybridReranker,
        SentenceReranker,
    )

    if settings.RAGAPP_RERANKER == "hybrid":
        return HybridReranker(
            dense_weight=settings.RAGAPP_RERANK_DENSE_WEIGHT,
            norm=settings.RAGAPP_RERANK_NORM,
            prf_depth=settings.RAGAPP_RERANK_PRF_DEPTH,
            prf_weight=settings.RAGAPP_RERANK_PRF_WEIGHT,
        )
    if settings.RAGAPP_RERANKER == "sentence":
        return SentenceReranker(embedder())
    if settings.RAGAPP_RERANKER == "cross_encoder":
        if not settings.RAGAPP_CROSS_ENCODER_PATH:
            raise ImproperlyConfigured(
                "RAGAPP_RERANKER=cross_encoder needs RAGAPP_CROSS_ENCODER_PATH"
            )
        return CrossEncoderReranker(settings.RAGAPP_CROSS_ENCODER_PATH)
    raise ImproperlyConfigured(f"unknown RAGAPP_RERANKER {settings.RAGAPP_RERANKER!r}")
