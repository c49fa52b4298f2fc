"""Hybrid retrieval: dense + BM25, fused, every candidate scored by both, reranked."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from ragapp.tracing import span, span_set, traced
from retrieval.pipeline.fuse import reciprocal_rank_fusion
from retrieval.providers.protocols import Candidate
from retrieval.providers.registry import embedder, reranker
from retrieval.selectors import (
    candidates_load,
    chunk_dense_search,
    chunk_lexical_forget,
    chunk_lexical_scores,
    chunk_lexical_search,
)

logger = logging.getLogger(__name__)


@dataclass
class RetrievalTrace:
    """What each stage returned for one query: ``(chunk id, score)`` lists, best first."""

    dense: list[tuple[int, float]]
    lexical: list[tuple[int, float]]
    fused: list[tuple[int, float]]
    ranked: list[Candidate]


@traced("ragapp.answer.retrieve")
def passages_search(
    query: str,
    *,
    collection_ids: list[int] | None,
    candidates: int | None = None,
    top_k: int | None = None,
    vector: np.ndarray | None = None,
) -> RetrievalTrace:
    """Run every retrieval stage for ``query`` within ``collection_ids`` (None: all).

    Dense and BM25 search each return ``candidates`` chunks; rank fusion merges them; then each
    fused candidate gets its exact dense similarity and its BM25 score,
    so the reranker sees both signals for every candidate, not only for the chunks that a
    retriever happened to rank in its own top list. ``vector``: the query's embedding when the
    caller already has it (the answer cache embeds the question first), so it is made once.
    """
    n = candidates or settings.RAGAPP_CANDIDATES
    top_k = top_k or settings.RAGAPP_TOP_K
    emb = embedder()
    span_set(candidates=n, top_k=top_k, collections=len(collection_ids or []) or None)
    if vector is None:
        with span("ragapp.answer.retrieve.embed", embedding_model=emb.name):
            vector = emb.embed_query(query)
    with span("ragapp.answer.retrieve.dense"):
        dense = chunk_dense_search(vector, model=emb.name, collection_ids=collection_ids, limit=n)
        span_set(returned=len(dense))
    with span("ragapp.answer.retrieve.lexical"):
        lexical = chunk_lexical_search(
            query, model=emb.name, collection_ids=collection_ids, limit=n
        )
        span_set(returned=len(lexical))
    with span("ragapp.answer.retrieve.fuse", rrf_k=settings.RAGAPP_RRF_K):
        fused = reciprocal_rank_fusion(
            {"dense": [cid for cid, _ in dense], "bm25": [cid for cid, _ in lexical]},
            k=settings.RAGAPP_RRF_K,
            weights=settings.RAGAPP_FUSION_WEIGHTS,
        )
        span_set(returned=len(fused))
    rerank = reranker()
    with span("ragapp.answer.retrieve.rerank", reranker=type(rerank).__name__):
        loaded = candidates_load(
            [cid for cid, _ in fused],
            model=emb.name,
            collection_ids=collection_ids,
            query_vector=vector,
            with_vectors=getattr(rerank, "needs_vectors", False),
        )
        if len(loaded) < len(fused):  # chunks deleted, moved or re-embedded since
            found = {c.chunk_id for c in loaded}
            chunk_lexical_forget(model=emb.name, chunk_ids=[c for c, _ in fused if c not in found])
        _complete_scores(query, loaded, fused=dict(fused), model=emb.name)
        ranked = rerank.rerank(query, loaded)[:top_k]
        span_set(returned=len(ranked))
    return RetrievalTrace(dense=dense, lexical=lexical, fused=fused, ranked=ranked)


def _complete_scores(
    query: str, candidates: list[Candidate], *, fused: dict[int, float], model: str
) -> None:
    # "dense" came with the candidates (computed in the database); BM25 comes from the index,
    # so chunks found by dense search alone get their real BM25 score too.
    bm25 = chunk_lexical_scores(query, model=model, chunk_ids=[c.chunk_id for c in candidates])
    for c in candidates:
        c.scores["fused"] = fused[c.chunk_id]
        c.scores["bm25"] = bm25.get(c.chunk_id, 0.0)


def passages_retrieve(
    query: str,
    *,
    collection_ids: list[int] | None,
    top_k: int | None = None,
    vector: np.ndarray | None = None,
) -> list[Candidate]:
    """The ``top_k`` best chunks for ``query`` within ``collection_ids`` (None: all).

    Each candidate carries the score of every stage (dense, bm25, fused, rerank) so an admin
    can see why it was chosen.
    """
    started = time.perf_counter()
    ranked = passages_search(
        query, collection_ids=collection_ids, top_k=top_k, vector=vector
    ).ranked
    logger.info(
        "retrieved",
        extra={"returned": len(ranked), "ms": int((time.perf_counter() - started) * 1000)},
    )
    return ranked
