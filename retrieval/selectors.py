"""Reads for retrieval: dense search in pgvector, BM25 over the same chunks, chunk loading."""

from __future__ import annotations

import threading

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max
from pgvector.django import CosineDistance

from ingestion.models import Chunk
from retrieval.providers.bm25 import RankBM25Index
from retrieval.providers.protocols import Candidate


def chunk_dense_search(
    vector: np.ndarray, *, model: str, collection_ids: list[int] | None, limit: int
) -> list[tuple[int, float]]:
    """Nearest chunks by cosine similarity, filtered inside the query (HNSW iterative scan)."""
    qs = Chunk.objects.filter(embedding_model=model)
    if collection_ids is not None:
        qs = qs.filter(document__collection_id__in=collection_ids)
    qs = qs.annotate(distance=CosineDistance("embedding", vector.tolist())).order_by("distance")
    with transaction.atomic(), connection.cursor() as cursor:
        # ef_search must be >= limit or HNSW returns fewer rows; iterative scans keep filtered
        # queries from coming back short when most chunks are filtered out.
        cursor.execute(
            "SET LOCAL hnsw.ef_search = %s", [max(settings.RAGAPP_HNSW_EF_SEARCH, limit)]
        )
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = list(qs.values_list("id", "distance")[:limit])
    # relaxed_order may return rows slightly out of order: sort them exactly.
    return sorted(((cid, 1.0 - float(d)) for cid, d in rows), key=lambda r: -r[1])


class _LexicalCache:
    """One BM25 index per process, rebuilt when the chunk table changes (any process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._signature: tuple[str, int, int] | None = None
        self._index = RankBM25Index([])

    def get(self, model: str) -> RankBM25Index:
        stats = Chunk.objects.filter(embedding_model=model).aggregate(n=Count("id"), top=Max("id"))
        signature = (model, stats["n"], stats["top"] or 0)
        with self._lock:
            if signature != self._signature:
                rows = list(
                    Chunk.objects.filter(embedding_model=model)
                    .order_by("id")
                    .values_list("id", "document__collection_id", "text")
                )
                self._index = RankBM25Index(rows)
                self._signature = signature
            return self._index


_lexical = _LexicalCache()


def chunk_lexical_search(
    query: str, *, model: str, collection_ids: list[int] | None, limit: int
) -> list[tuple[int, float]]:
    """BM25 over the chunks embedded with ``model`` (the same set dense search sees)."""
    return _lexical.get(model).search(query, collection_ids=collection_ids, limit=limit)


def candidates_load(chunk_ids: list[int]) -> list[Candidate]:
    """Chunks as ``Candidate``s with their document, in the order of ``chunk_ids``."""
    rows = Chunk.objects.filter(id__in=chunk_ids).select_related("document")
    by_id = {
        c.id: Candidate(
            chunk_id=c.id,
            document_id=str(c.document_id),
            document_title=c.document.title,
            text=c.text,
            page=c.page,
            heading=c.heading,
            embedding=np.asarray(c.embedding, dtype=np.float32),
        )
        for c in rows
    }
    return [by_id[i] for i in chunk_ids if i in by_id]
