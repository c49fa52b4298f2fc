"""SciFact retrieval benchmark: ingest the corpus through chunk -> embed -> index, run the queries
through the retrieval service, and score every stage with trec_eval's definitions.

Documents skip the upload and parse steps (the corpus is already text): each becomes a title
block and a body block, chunked by the ingestion chunker and embedded by the configured embedder,
with embeddings cached on disk by model and text hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ingestion.models import Chunk, Collection, Document
from retrieval.benchmarks.beir import BeirDataset, dataset_load, document_chunks
from retrieval.benchmarks.embedding_cache import EmbeddingCache
from retrieval.benchmarks.metrics import evaluate, ranking_to_run
from retrieval.providers.protocols import Embedder
from retrieval.providers.registry import embedder
from retrieval.services import passages_search

logger = logging.getLogger(__name__)

COLLECTION = "bench-scifact"
STAGES = ("bm25", "dense", "fused", "reranked")


@dataclass(frozen=True)
class BenchChunk:
    doc_id: str
    index: int
    text: str
    heading: str
    token_count: int


def cache_dir() -> Path:
    """Shared by every data folder: the cache depends only on the model and the texts."""
    return settings.BASE_DIR / ".data" / "bench-cache"


def scifact_load() -> BeirDataset:
    return dataset_load(settings.RAGAPP_SHARED_DATA / "beir" / "scifact")


def scifact_chunks(dataset: BeirDataset, emb: Embedder) -> list[BenchChunk]:
    """Chunks of every document, cached on disk (chunking 5k abstracts takes about 2 minutes)."""
    max_tokens, overlap = settings.RAGAPP_CHUNK_TOKENS, settings.RAGAPP_CHUNK_OVERLAP
    path = cache_dir() / f"scifact-chunks-{emb.name}-{max_tokens}-{overlap}.json"
    if path.exists():
        return [BenchChunk(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
    count_tokens = lru_cache(maxsize=100_000)(emb.count_tokens)
    chunks = [
        BenchChunk(doc.id, d.index, d.text, d.heading, d.token_count)
        for doc in dataset.corpus
        for d in document_chunks(
            doc, max_tokens=max_tokens, overlap=overlap, count_tokens=count_tokens
        )
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(c) for c in chunks]), encoding="utf-8")
    return chunks


def scifact_ingest(dataset: BeirDataset, chunks: list[BenchChunk], emb: Embedder) -> Collection:
    """The corpus as one collection of ready documents; reused when already complete."""
    collection, _ = Collection.objects.get_or_create(
        slug=COLLECTION, defaults={"name": "SciFact benchmark"}
    )
    existing = Chunk.objects.filter(document__collection=collection, embedding_model=emb.name)
    if existing.count() == len(chunks):
        return collection
    vectors = EmbeddingCache(settings.BASE_DIR / ".data" / "embedding-cache", emb).embed(
        [c.text for c in chunks]
    )
    started = time.perf_counter()
    with transaction.atomic():
        Document.objects.filter(collection=collection).delete()
        documents = Document.objects.bulk_create(
            Document(
                collection=collection,
                title=doc.title[:300],
                original_name=doc.id,
                content_hash=hashlib.sha256(f"{doc.id}\n{doc.text}".encode()).hexdigest(),
                status=Document.Status.READY,
                stage=Document.Stage.INDEXED,
            )
            for doc in dataset.corpus
        )
        by_beir_id = {d.original_name: d for d in documents}
        Chunk.objects.bulk_create(
            (
                Chunk(
                    document=by_beir_id[c.doc_id],
                    index=c.index,
                    text=c.text,
                    heading=c.heading[:500],
                    token_count=c.token_count,
                    embedding=vector,
                    embedding_model=emb.name,
                )
                for c, vector in zip(chunks, vectors, strict=True)
            ),
            batch_size=1000,
        )
    logger.info("ingested %d chunks in %.0f s", len(chunks), time.perf_counter() - started)
    return collection


def _documents(chunk_ids: list[int], doc_of: dict[int, str]) -> list[str]:
    """Chunk ranking -> document ranking: a document ranks where its best chunk does."""
    return list(dict.fromkeys(doc_of[c] for c in chunk_ids if c in doc_of))


def scifact_run(*, split: str = "test", candidates: int = 100) -> dict[str, dict[str, float]]:
    """nDCG@10, Recall@10 and Recall@100 of each stage on ``split``, through ``passages_search``."""
    dataset = scifact_load()
    emb = embedder()
    chunks = scifact_chunks(dataset, emb)
    collection = scifact_ingest(dataset, chunks, emb)
    doc_of = dict(
        Chunk.objects.filter(document__collection=collection).values_list(
            "id", "document__original_name"
        )
    )
    qrels = dataset.qrels[split]
    runs: dict[str, dict[str, dict[str, float]]] = {stage: {} for stage in STAGES}
    started = time.perf_counter()
    for query_id in qrels:
        trace = passages_search(
            dataset.queries[query_id],
            collection_ids=[collection.id],
            candidates=candidates,
            top_k=candidates * 2,
        )
        rankings = {
            "bm25": [cid for cid, _ in trace.lexical],
            "dense": [cid for cid, _ in trace.dense],
            "fused": [cid for cid, _ in trace.fused],
            "reranked": [c.chunk_id for c in trace.ranked],
        }
        for stage, ids in rankings.items():
            runs[stage][query_id] = ranking_to_run(_documents(ids, doc_of))
    elapsed = time.perf_counter() - started
    logger.info("ran %d queries in %.1f s", len(qrels), elapsed)
    return {stage: evaluate(qrels, runs[stage]) for stage in STAGES}
