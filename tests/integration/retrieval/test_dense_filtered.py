"""Dense search through the HNSW index keeps its recall when a filter excludes 90% of chunks."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from pgvector.django import CosineDistance

from ingestion.models import Chunk, Collection, Document
from retrieval.selectors import chunk_dense_search

pytestmark = pytest.mark.integration
MODEL = "test-vectors"


@pytest.fixture
def ten_collections(db):  # type: ignore[no-untyped-def]
    """1,500 clustered unit vectors spread over ten collections."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((30, 384)).astype(np.float32)
    vectors = centers[rng.integers(0, 30, 1500)] + 0.3 * rng.standard_normal((1500, 384))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    documents = []
    for i in range(10):
        collection = Collection.objects.create(slug=f"c{i}", name=f"C{i}")
        documents.append(
            Document.objects.create(
                collection=collection, title=f"D{i}", original_name=f"d{i}.txt",
                content_hash=f"{i:064x}", status=Document.Status.READY,
            )
        )  # fmt: skip
    chunks = Chunk.objects.bulk_create(
        Chunk(document=documents[i % 10], index=i // 10, text=f"chunk {i}", embedding=v,
              embedding_model=MODEL)
        for i, v in enumerate(vectors)
    )  # fmt: skip
    ids = np.array([c.id for c in chunks])
    collection_of = np.array([documents[i % 10].collection_id for i in range(len(vectors))])
    with connection.cursor() as cursor:
        # Tables this small are cheaper to scan and sort exactly: make the planner use HNSW,
        # as it does at production sizes, so this tests the approximate path.
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_sort = off")
    return vectors, ids, collection_of, rng


def test_the_query_plan_uses_the_hnsw_index(ten_collections):
    vectors, _, collection_of, _ = ten_collections
    qs = Chunk.objects.filter(
        embedding_model=MODEL, document__collection_id__in=[int(collection_of[0])]
    ).order_by(CosineDistance("embedding", vectors[0].tolist()))
    assert "chunk_embedding_hnsw" in qs[:10].explain()


def test_a_filter_excluding_90_percent_of_chunks_keeps_recall_at_10(ten_collections):
    vectors, ids, collection_of, rng = ten_collections
    keep = int(collection_of[3])
    inside = collection_of == keep
    hits = 0
    for _ in range(20):
        query = vectors[rng.integers(0, len(vectors))] + 0.2 * rng.standard_normal(384)
        query = (query / np.linalg.norm(query)).astype(np.float32)
        exact = ids[np.argsort(-np.where(inside, vectors @ query, -np.inf))[:10]]
        found = chunk_dense_search(query, model=MODEL, collection_ids=[keep], limit=10)
        assert len(found) == 10
        assert all(collection_of[list(ids).index(cid)] == keep for cid, _ in found)
        hits += len(set(exact.tolist()) & {cid for cid, _ in found})
    assert hits / 200 >= 0.95


def test_limit_above_the_default_ef_search_still_returns_every_row_asked_for(ten_collections):
    vectors, *_ = ten_collections
    assert len(chunk_dense_search(vectors[0], model=MODEL, collection_ids=None, limit=150)) == 150
