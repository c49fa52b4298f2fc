"""Hybrid retrieval: dense + BM25, fused, reranked."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from retrieval.pipeline.fuse import reciprocal_rank_fusion
from retrieval.providers.protocols import Candidate
from retrieval.providers.registry import embedder, reranker
from retrieval.selectors import candidates_load, chunk_dense_search, chunk_lexical_search

logger = logging.getLogger(__name__)


def passages_retrieve(
    query: str, *, collection_ids: list[int] | None, top_k: int | None = None
) -> list[Candidate]:
    """The ``top_k`` best chunks for ``query`` within ``collection_ids`` (None: all).

    Each candidate carries the score of every stage (dense, bm25, fused, rerank) so an admin
    can see why it was chosen.
    """
    started = time.perf_counter()
    top_k = top_k or settings.RAGAPP_TOP_K
    n = settings.RAGAPP_CANDIDATES
    emb = embedder()
    dense = chunk_dense_search(
        emb.embed_query(query), model=emb.name, collection_ids=collection_ids, limit=n
    )
    lexical = chunk_lexical_search(query, model=emb.name, collection_ids=collection_ids, limit=n)
    fused = reciprocal_rank_fusion(
        {"dense": [cid for cid, _ in dense], "bm25": [cid for cid, _ in lexical]},
        k=settings.RAGAPP_RRF_K,
    )
    candidates = candidates_load([cid for cid, _ in fused])
    dense_scores, bm25_scores, fused_scores = dict(dense), dict(lexical), dict(fused)
    for c in candidates:
        c.scores["fused"] = fused_scores[c.chunk_id]
        if c.chunk_id in dense_scores:
            c.scores["dense"] = dense_scores[c.chunk_id]
        if c.chunk_id in bm25_scores:
            c.scores["bm25"] = bm25_scores[c.chunk_id]
    ranked = reranker().rerank(query, candidates)[:top_k]
    logger.info(
        "retrieved",
        extra={"candidates": len(candidates), "ms": int((time.perf_counter() - started) * 1000)},
    )
    return ranked
