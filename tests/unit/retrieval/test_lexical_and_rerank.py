from __future__ import annotations

import numpy as np

from retrieval.pipeline.rerank import hybrid_scores
from retrieval.pipeline.text import lexical_terms
from retrieval.providers.bm25 import BM25SIndex, RankBM25Index
from retrieval.providers.protocols import Candidate
from retrieval.providers.rerankers import HybridReranker

ROWS = [
    (10, 1, "Reset links expire after thirty minutes."),
    (11, 1, "Refunds are paid within five working days."),
    (12, 2, "Password resets need the account's email address."),
    (13, 2, "Inhibition of the enzyme lowers blood pressure."),
]


def _candidate(chunk_id: int, *, dense: float, bm25: float) -> Candidate:
    return Candidate(
        chunk_id=chunk_id,
        document_id="d",
        document_title="t",
        text="",
        page=None,
        heading="",
        scores={"dense": dense, "bm25": bm25},
    )


def test_stemming_lets_a_verb_match_its_noun():
    assert lexical_terms("inhibits") == lexical_terms("inhibition") == ["inhibit"]
    hits = BM25SIndex(ROWS).search("what inhibits the enzyme", collection_ids=None, limit=5)
    assert [cid for cid, _ in hits] == [13]


def test_bm25s_and_rank_bm25_agree_on_the_best_chunk():
    for query in ["password reset email", "refunds paid", "links expire"]:
        a = BM25SIndex(ROWS).search(query, collection_ids=None, limit=1)
        b = RankBM25Index(ROWS).search(query, collection_ids=None, limit=1)
        assert a[0][0] == b[0][0]


def test_a_collection_filter_excluding_90_percent_still_returns_the_best_allowed_chunks():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(50)]
    rows = [(i, i % 10, " ".join(rng.choice(words, 20))) for i in range(1000)]
    index = BM25SIndex(rows)
    hits = index.search("w3 w7 w11", collection_ids=[4], limit=20)
    assert len(hits) == 20 and all(cid % 10 == 4 for cid, _ in hits)
    allowed = [(cid, s) for cid, s in index.search("w3 w7 w11", collection_ids=None, limit=1000)]
    assert hits == [(cid, s) for cid, s in allowed if cid % 10 == 4][:20]


def test_score_ids_gives_the_search_score_and_zero_without_a_query_term():
    index = BM25SIndex(ROWS)
    (best, score), *_ = index.search("refunds", collection_ids=None, limit=1)
    assert index.score_ids("refunds", [best, 13, 999]) == {best: score, 13: 0.0, 999: 0.0}


def test_forgotten_chunks_are_not_returned():
    index = BM25SIndex(ROWS)
    index.forget([11])
    assert index.search("refunds", collection_ids=None, limit=5) == []


def test_a_query_without_known_terms_returns_nothing():
    assert BM25SIndex(ROWS).search("the and of", collection_ids=None, limit=5) == []
    assert BM25SIndex([]).search("refunds", collection_ids=None, limit=5) == []


def test_hybrid_scores_weigh_normalised_signals():
    # Dense alone prefers the first, BM25 alone the second; the weight decides.
    dense, bm25 = [0.9, 0.5, 0.1], [1.0, 9.0, 0.0]
    assert np.argmax(hybrid_scores(dense, bm25, dense_weight=0.9, norm="minmax")) == 0
    assert np.argmax(hybrid_scores(dense, bm25, dense_weight=0.1, norm="minmax")) == 1
    assert hybrid_scores([], [], dense_weight=0.5) == []


def test_the_hybrid_reranker_lifts_a_candidate_strong_on_both_signals():
    candidates = [
        _candidate(1, dense=0.80, bm25=0.0),  # first in fused order: dense only
        _candidate(2, dense=0.45, bm25=12.0),  # BM25 only
        _candidate(3, dense=0.75, bm25=10.0),  # good on both
        _candidate(4, dense=0.10, bm25=0.0),  # good on neither
    ]
    ranked = HybridReranker(dense_weight=0.5, norm="minmax").rerank("q", candidates)
    assert [c.chunk_id for c in ranked] == [3, 2, 1, 4]
    assert all("rerank" in c.scores for c in ranked)
    assert ranked[0].score == ranked[0].scores["rerank"]


def test_feedback_moves_candidates_close_to_the_first_pass_winners_up():
    # Candidate 3 is weak on both signals but its vector matches the best first-pass candidate.
    vectors = {1: [1.0, 0.0], 2: [0.0, 1.0], 3: [0.9, 0.1], 4: [0.1, 0.9]}
    candidates = [
        _candidate(1, dense=0.9, bm25=9.0),
        _candidate(2, dense=0.5, bm25=5.0),
        _candidate(3, dense=0.45, bm25=4.8),
        _candidate(4, dense=0.5, bm25=5.1),
    ]
    for c in candidates:
        c.embedding = np.asarray(vectors[c.chunk_id], dtype=np.float32)
    plain = HybridReranker(dense_weight=0.6, norm="max").rerank("q", list(candidates))
    feedback = HybridReranker(dense_weight=0.6, norm="max", prf_depth=1, prf_weight=1.0)
    assert feedback.needs_vectors and not HybridReranker().needs_vectors
    assert [c.chunk_id for c in plain][-1] == 3
    assert [c.chunk_id for c in feedback.rerank("q", list(candidates))][:2] == [1, 3]
