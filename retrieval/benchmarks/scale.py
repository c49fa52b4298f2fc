"""Retrieval at scale: synthetic corpora of 10k-300k chunks, bulk-loaded with COPY.

Run it against its own database (the management command refuses the default data folder):
every corpus replaces the chunk and document tables' contents. Vectors are clustered random
384-d unit vectors (uniform random vectors have no neighbourhood structure, unlike real
embeddings); texts are Zipf-distributed words. Latency is measured in a fresh child process,
so its RSS is the footprint of a serving process (models + BM25 index), not of the generator.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

DIM = 384
CHUNKS_PER_DOCUMENT = 10
COLLECTIONS = 10  # a filter on one collection excludes 90% of the chunks
VOCABULARY = 30_000
WORDS_PER_CHUNK = 120


def _model() -> str:
    """Chunks carry the serving embedder's name, or retrieval would not see them."""
    from retrieval.providers.registry import embedder

    return embedder().name


@dataclass
class Corpus:
    vectors: np.ndarray  # (n, DIM), unit length
    collection_of: np.ndarray  # (n,) index into the collection ids
    chunk_ids: np.ndarray


def _words(rng: np.random.Generator, n: int, length: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, size=n * length), VOCABULARY) - 1
    vocab = np.array([f"w{i}" for i in range(VOCABULARY)])
    return [" ".join(row) for row in vocab[ranks.reshape(n, length)]]


def clustered_vectors(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    picks = rng.integers(0, len(centers), size=n)
    v = centers[picks] + rng.standard_normal((n, DIM)).astype(np.float32) * 0.06
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def corpus_build(n: int, *, seed: int = 0) -> Corpus:
    """Replace the chunk table's contents with ``n`` synthetic chunks; rebuild the HNSW index."""
    from pgvector.psycopg import register_vector

    from ingestion.models import Collection, Document

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 100, 50), DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vectors = clustered_vectors(rng, n, centers)
    np.save(_centers_path(), centers)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE ingestion_chunk, ingestion_document CASCADE")
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    collection_ids = [
        Collection.objects.get_or_create(slug=f"scale-{i}", defaults={"name": f"Scale {i}"})[0].id
        for i in range(COLLECTIONS)
    ]
    n_docs = -(-n // CHUNKS_PER_DOCUMENT)
    doc_ids = [uuid.UUID(int=int(x)) for x in rng.integers(1, 2**63, size=n_docs)]
    doc_collection = rng.integers(0, COLLECTIONS, size=n_docs)
    raw = connection.connection
    register_vector(raw)
    # Documents through the ORM (model defaults fill columns ingestion adds); chunks by COPY.
    Document.objects.bulk_create(
        (
            Document(
                id=doc_id,
                collection_id=collection_ids[doc_collection[i]],
                title=f"Document {i}",
                original_name=f"d{i}.txt",
                content_hash=f"{i:064x}",
                status=Document.Status.READY,
                stage=Document.Stage.INDEXED,
            )
            for i, doc_id in enumerate(doc_ids)
        ),
        batch_size=5000,
    )
    with raw.cursor() as cur:
        batch = 20_000
        with cur.copy(
            "COPY ingestion_chunk (document_id, index, text, heading, token_count, embedding,"
            " embedding_model, flagged, flag_reason, created_at) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "int4", "text", "varchar", "int4", "vector", "varchar",
                            "bool", "varchar", "timestamptz"])  # fmt: skip
            stamp = datetime.now(UTC)
            for start in range(0, n, batch):
                texts = _words(rng, min(batch, n - start), WORDS_PER_CHUNK)
                for j, text in enumerate(texts):
                    i = start + j
                    copy.write_row(
                        (doc_ids[i // CHUNKS_PER_DOCUMENT], i % CHUNKS_PER_DOCUMENT, text, "",
                         WORDS_PER_CHUNK, vectors[i], _model(), False, "", stamp)
                    )  # fmt: skip
    raw.commit() if not raw.autocommit else None
    loaded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute(
            "CREATE INDEX chunk_embedding_hnsw ON ingestion_chunk USING hnsw"
            " (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        cursor.execute("VACUUM ANALYZE ingestion_chunk")
        cursor.execute("VACUUM ANALYZE ingestion_document")
    # Chunk ids follow COPY order; map them back to the generated rows through (document, index).
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, document_id, index FROM ingestion_chunk")
        position = {(doc, idx): cid for cid, doc, idx in cursor.fetchall()}
    chunk_ids = np.array(
        [position[(doc_ids[i // CHUNKS_PER_DOCUMENT], i % CHUNKS_PER_DOCUMENT)] for i in range(n)]
    )
    logger.info(
        "corpus of %d chunks: loaded in %.0f s, indexed in %.0f s",
        n, loaded, time.perf_counter() - started - loaded,
    )  # fmt: skip
    collection_of = np.array(
        [collection_ids[doc_collection[i // CHUNKS_PER_DOCUMENT]] for i in range(n)]
    )
    return Corpus(vectors=vectors, collection_of=collection_of, chunk_ids=chunk_ids)


def _centers_path():  # type: ignore[no-untyped-def]
    return settings.DATA_DIR / "scale-centers.npy"


def hnsw_recall(
    corpus: Corpus, *, queries: int = 100, k: int = 10, seed: int = 1
) -> dict[str, float]:
    """Recall@k of the dense selector against exact search, unfiltered and with a filter that
    keeps one collection of ten (90% of chunks excluded)."""
    from retrieval.selectors import chunk_dense_search

    rng = np.random.default_rng(seed)
    centers = np.load(_centers_path())
    q = clustered_vectors(rng, queries, centers)
    keep = int(corpus.collection_of[0])
    inside = corpus.collection_of == keep
    hits = {"all": 0, "filtered": 0}
    for vector in q:
        sims = corpus.vectors @ vector
        exact = set(corpus.chunk_ids[np.argsort(-sims)[:k]].tolist())
        found = {
            cid
            for cid, _ in chunk_dense_search(vector, model=_model(), collection_ids=None, limit=k)
        }
        hits["all"] += len(exact & found)
        masked = np.where(inside, sims, -np.inf)
        exact_f = set(corpus.chunk_ids[np.argsort(-masked)[:k]].tolist())
        found_f = {
            cid
            for cid, _ in chunk_dense_search(vector, model=_model(), collection_ids=[keep], limit=k)
        }
        hits["filtered"] += len(exact_f & found_f)
    return {
        f"hnsw_recall@{k}": round(hits["all"] / (queries * k), 4),
        f"hnsw_recall@{k}_filtered_90pct": round(hits["filtered"] / (queries * k), 4),
    }


def latency_measure(*, queries: int, seed: int = 2) -> dict[str, float]:
    """p50/p95 of ``passages_search`` (embed + dense + BM25 + fusion + rerank of the candidates)
    over ``queries`` Zipf-text queries, and this process's RSS afterwards. Run in a child."""
    from retrieval import selectors
    from retrieval.providers.registry import embedder, reranker
    from retrieval.services import passages_search

    rng = np.random.default_rng(seed)
    texts = _words(rng, queries + 10, 8)
    embedder().load()
    built = time.perf_counter()
    selectors.chunk_lexical_search("w1", model=_model(), collection_ids=None, limit=1)
    build_s = time.perf_counter() - built
    reranker()
    for text in texts[:10]:  # warm-up: first-call costs are not serving latency
        passages_search(text, collection_ids=None)
    from ingestion.models import Collection

    # A non-admin caller's search is filtered by the collections they may read: here one of
    # ten, so the HNSW walk runs with the filtered ef_search and 90% of chunks excluded.
    one = [Collection.objects.get(slug="scale-0").id]
    passages_search(texts[0], collection_ids=one)  # its own BM25 mask, built once
    timings, filtered = [], []
    stage: dict[str, list[float]] = {"embed": [], "watermark": [], "bm25": []}
    for text in texts[10:]:
        started = time.perf_counter()
        passages_search(text, collection_ids=None)
        timings.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        passages_search(text, collection_ids=one)
        filtered.append((time.perf_counter() - started) * 1000)
    for text in texts[10:60]:
        t = time.perf_counter()
        embedder().embed_query(text)
        stage["embed"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        selectors._watermark(_model())
        stage["watermark"].append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        selectors.chunk_lexical_search(text, model=_model(), collection_ids=None, limit=50)
        stage["bm25"].append((time.perf_counter() - t) * 1000)
    timings.sort()
    filtered.sort()
    with open("/proc/self/status") as fh:
        rss_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 1),
        "filtered_p50_ms": round(statistics.median(filtered), 1),
        "filtered_p95_ms": round(filtered[int(0.95 * (len(filtered) - 1))], 1),
        "rss_mb": round(rss_kb / 1024),
        "bm25_build_s": round(build_s, 1),
        **{f"{name}_p50_ms": round(statistics.median(v), 2) for name, v in stage.items()},
    }


def latency_in_child(*, queries: int) -> dict[str, float]:
    env = {**os.environ, "RAGAPP_SCALE_CHILD": "1"}
    out = subprocess.run(
        [sys.executable, "manage.py", "bench_retrieval_scale", "--measure-only", "--queries",
         str(queries)],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])
