"""The retrieval service end to end on the sample knowledge base, with the packaged embedder."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.services import passages_retrieve, passages_search

pytestmark = pytest.mark.integration


def test_results_carry_chunk_document_heading_and_every_stage_score(sample_kb):
    collection_id = sample_kb[0].collection_id
    ranked = passages_retrieve("How do I reset my password?", collection_ids=[collection_id])
    assert ranked, "the sample knowledge base answers this"
    top = ranked[0]
    assert top.chunk_id and top.document_id and top.document_title and top.text
    assert hasattr(top, "page") and hasattr(top, "heading")
    assert {"dense", "bm25", "fused", "rerank"} <= set(top.scores)
    assert "password" in top.text.lower()
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)


def test_a_foreign_collection_returns_nothing(sample_kb):
    assert passages_retrieve("reset password", collection_ids=[-1]) == []


def test_the_trace_reports_each_stage(sample_kb):
    trace = passages_search("refund", collection_ids=None, candidates=5, top_k=3)
    assert len(trace.dense) <= 5 and len(trace.lexical) <= 5
    assert {cid for cid, _ in trace.fused} == {cid for cid, _ in trace.dense + trace.lexical}
    assert len(trace.ranked) <= 3


def test_candidates_load_their_stored_vectors_exactly_from_the_binary_form(sample_kb):
    from ingestion.models import Chunk
    from retrieval.providers.registry import embedder
    from retrieval.selectors import candidates_load

    stored = dict(Chunk.objects.values_list("id", "embedding")[:20])

    loaded = candidates_load(list(stored), model=embedder().name, with_vectors=True)

    assert [c.chunk_id for c in loaded] == list(stored)
    for candidate in loaded:
        assert candidate.embedding.dtype == np.float32
        expected = np.asarray(stored[candidate.chunk_id], dtype=np.float32)  # stored as float4
        np.testing.assert_array_equal(candidate.embedding, expected)
