"""Explore retrieval settings on SciFact's *train* judgements, in memory (no database).

Exact dense search over the cached chunk vectors and the same BM25 index class the product uses;
every variant is scored with pytrec_eval. Only settings that help on train go into settings.py.

    RAGAPP_DATA_DIR=.data/bench-retrieval .venv/bin/python bench/tune_retrieval_scifact.py
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import django
import numpy as np
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")
django.setup()

from retrieval.benchmarks.embedding_cache import EmbeddingCache  # noqa: E402
from retrieval.benchmarks.metrics import evaluate, ranking_to_run  # noqa: E402
from retrieval.benchmarks.scifact import scifact_chunks, scifact_load  # noqa: E402
from retrieval.pipeline.fuse import reciprocal_rank_fusion  # noqa: E402
from retrieval.pipeline.rerank import hybrid_scores  # noqa: E402
from retrieval.providers.bm25 import BM25SIndex  # noqa: E402
from retrieval.providers.registry import embedder  # noqa: E402

SPLIT = os.environ.get("SPLIT", "train")
DEPTH = 100

dataset = scifact_load()
emb = embedder()
chunks = scifact_chunks(dataset, emb)
MODE = os.environ.get("MODE", "all")
cache = EmbeddingCache(settings.BASE_DIR / ".data" / "embedding-cache", emb)
qrels = dataset.qrels[SPLIT]
query_ids = list(qrels)
doc_of = np.array([c.doc_id for c in chunks])
titles = {d.id: d.title for d in dataset.corpus}


def docs(chunk_positions) -> list[str]:  # type: ignore[no-untyped-def]
    return list(dict.fromkeys(doc_of[i] for i in chunk_positions))


def score(rankings: dict[str, list[str]]) -> dict[str, float]:
    return evaluate(qrels, {q: ranking_to_run(r) for q, r in rankings.items()})


def lexical(fields: str, k1: float, b: float, stem: bool) -> BM25SIndex:
    def text(c) -> str:  # type: ignore[no-untyped-def]
        if fields == "text":
            return c.text
        if fields == "title+text":  # the first chunk already starts with the title
            return c.text if c.index == 0 else f"{titles[c.doc_id]}\n{c.text}"
        return f"{titles[c.doc_id]}\n{c.text}"  # title always added (title twice in chunk 0)

    return BM25SIndex([(i, 1, text(c)) for i, c in enumerate(chunks)], k1=k1, b=b, stem=stem)


LEX_GRID = (
    itertools.product(
        ["text", "title+text", "title2+text"], [True, False], [(0.9, 0.4), (1.2, 0.75), (1.5, 0.75)]
    )
    if MODE == "bm25"
    else [("title+text", True, kb) for kb in [(0.9, 0.4), (0.7, 0.3), (1.2, 0.4), (0.9, 0.6)]]
)
best_lex = None
for fields, stem, (k1, b) in LEX_GRID:
    index = lexical(fields, k1, b, stem)
    top = {
        q: [
            cid for cid, _ in index.search(dataset.queries[q], collection_ids=None, limit=DEPTH * 3)
        ]
        for q in query_ids
    }
    m = score({q: docs(top[q]) for q in query_ids})
    print("bm25", fields, "stem" if stem else "nostem", k1, b, m)
    if best_lex is None or m["ndcg@10"] > best_lex[0]:
        best_lex = (m["ndcg@10"], fields, stem, k1, b, index, top)

_, fields, stem, k1, b, index, lex_top = best_lex  # type: ignore[misc]
print("best bm25", fields, stem, k1, b)
if MODE == "bm25":
    sys.exit(0)
vectors = cache.embed([c.text for c in chunks])
qvecs = cache.embed([dataset.queries[q] for q in query_ids], query=True)
dense_all = qvecs @ vectors.T  # (queries, chunks) exact cosine
dense_top = np.argsort(-dense_all, axis=1)[:, : DEPTH * 3]
print("dense", score({q: docs(dense_top[i]) for i, q in enumerate(query_ids)}))

for n in [50, 100]:
    for k, w in itertools.product([10, 30, 60], [0.5, 1.0, 1.5]):
        rankings = {}
        for i, q in enumerate(query_ids):
            fused = reciprocal_rank_fusion(
                {"dense": list(dense_top[i][:n]), "bm25": lex_top[q][:n]}, k=k, weights={"dense": w}
            )
            rankings[q] = docs([cid for cid, _ in fused])
        print("rrf n", n, "k", k, "dense weight", w, score(rankings))

features = {}
for n in [50, 100]:
    for i, q in enumerate(query_ids):
        ids = list(dict.fromkeys(list(dense_top[i][:n]) + lex_top[q][:n]))
        bm = index.score_ids(dataset.queries[q], ids)
        features[n, q] = (
            ids,
            np.array([dense_all[i, c] for c in ids]),
            np.array([bm[c] for c in ids]),
        )

best = None
for n, norm, alpha in itertools.product(
    [50, 100], ["max", "minmax", "z"], [0.3, 0.4, 0.5, 0.6, 0.7]
):
    rankings = {}
    for q in query_ids:
        ids, d, bm = features[n, q]
        s = hybrid_scores(d, bm, dense_weight=alpha, norm=norm)
        rankings[q] = docs([ids[j] for j in np.argsort(-np.asarray(s), kind="stable")])
    m = score(rankings)
    print("hybrid n", n, norm, "dense weight", alpha, m)
    if best is None or m["ndcg@10"] > best[0]:
        best = (m["ndcg@10"], n, norm, alpha)
print("best hybrid", best)
_, n, norm, alpha = best  # type: ignore[misc]

# Pseudo-relevance feedback on the dense side: move the query towards the centroid of the
# first pass's top candidates, using only the candidates' stored vectors.
for depth, beta in itertools.product([3, 5, 10], [0.25, 0.5, 1.0]):
    rankings = {}
    for q in query_ids:
        ids, d, bm = features[n, q]
        first = np.argsort(
            -np.asarray(hybrid_scores(d, bm, dense_weight=alpha, norm=norm)), kind="stable"
        )
        centroid = vectors[[ids[j] for j in first[:depth]]].mean(axis=0)
        d2 = d + beta * (vectors[ids] @ centroid)
        s = hybrid_scores(d2, bm, dense_weight=alpha, norm=norm)
        rankings[q] = docs([ids[j] for j in np.argsort(-np.asarray(s), kind="stable")])
    print("prf depth", depth, "beta", beta, score(rankings))
