"""Reads for retrieval: dense search in pgvector, BM25 over the same chunks, chunk loading."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import BinaryField, Func
from pgvector.django import CosineDistance

from ingestion.models import Chunk
from retrieval.providers.bm25 import BM25SIndex
from retrieval.providers.protocols import Candidate

logger = logging.getLogger(__name__)


def chunk_dense_search(
    vector: np.ndarray, *, model: str, collection_ids: list[int] | None, limit: int
) -> list[tuple[int, float]]:
    """Nearest chunks by cosine similarity, filtered inside the query (HNSW iterative scan)."""
    qs = Chunk.objects.filter(embedding_model=model)
    ef_search = settings.RAGAPP_HNSW_EF_SEARCH
    if collection_ids is not None:
        qs = qs.filter(document__collection_id__in=collection_ids)
        # The filter applies after the graph walk: a wider walk keeps the allowed chunks' true
        # nearest neighbours in the first batch instead of the next-nearest ones.
        ef_search = settings.RAGAPP_HNSW_EF_SEARCH_FILTERED
    qs = qs.annotate(distance=CosineDistance("embedding", vector.tolist())).order_by("distance")
    with transaction.atomic(), connection.cursor() as cursor:
        # ef_search must be >= limit or HNSW returns fewer rows; iterative scans keep filtered
        # queries from coming back short when most chunks are filtered out.
        # One round trip for both settings (an int is safe to format in).
        cursor.execute(
            f"SET LOCAL hnsw.ef_search = {int(max(ef_search, limit))};"
            " SET LOCAL hnsw.iterative_scan = relaxed_order"
        )
        rows = list(qs.values_list("id", "distance")[:limit])
    # relaxed_order may return rows slightly out of order: sort them exactly.
    return sorted(((cid, 1.0 - float(d)) for cid, d in rows), key=lambda r: -r[1])


# --- Lexical ---------------------------------------------------------------------------------


def lexical_text(title: str, heading: str, text: str) -> str:
    """What BM25 indexes for a chunk: its text, after its heading (or document title) when the
    text does not already start with it, so a passage matches on what it is about."""
    label = heading or title
    if not settings.RAGAPP_BM25_TITLE or not label or text.startswith(label):
        return text
    return f"{label}\n{text}"


def _watermark(model: str) -> tuple[int, int]:
    """Changes whenever chunks of ``model`` are added or a document is deleted (any process).

    Chunk ids only grow and re-ingesting a document replaces its chunks with new ids, so the
    newest id catches every addition; a deletion changes the document count. Both are index
    reads (milliseconds at 100k+ chunks), unlike counting the chunk table itself.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT max(id) FROM ingestion_chunk WHERE embedding_model = %s),"
            " (SELECT count(*) FROM ingestion_document)",
            [model],
        )
        top, documents = cursor.fetchone()
    return int(top or 0), int(documents)


def _lexical_build(model: str) -> tuple[BM25SIndex, tuple[int, int]]:
    started = time.perf_counter()
    with transaction.atomic():  # one snapshot: the watermark matches the rows read
        watermark = _watermark(model)
        rows = [
            (cid, collection, lexical_text(title, heading, text))
            for cid, collection, title, heading, text in Chunk.objects.filter(embedding_model=model)
            .order_by("id")
            .values_list("id", "document__collection_id", "document__title", "heading", "text")
            .iterator(chunk_size=5000)
        ]
    index = BM25SIndex(
        rows, k1=settings.RAGAPP_BM25_K1, b=settings.RAGAPP_BM25_B, stem=settings.RAGAPP_BM25_STEM
    )
    logger.info(
        "lexical index built",
        extra={"chunks": len(rows), "seconds": round(time.perf_counter() - started, 2)},
    )
    return index, watermark


@dataclass
class _Entry:
    index: BM25SIndex
    watermark: tuple[int, int]
    built_at: float = field(default_factory=time.monotonic)
    stale: bool = False


class _LexicalIndexes:
    """One BM25 index per embedding model in this process, kept in step with the database.

    Every search compares the database's watermark with the index's. A small index is rebuilt
    at once. A large one (more than ``RAGAPP_LEXICAL_SYNC_MAX`` chunks) is rebuilt in a
    background thread while the old index keeps answering, so a rebuild at 100k+ chunks never
    stalls requests: for those few seconds new chunks are found by dense search only, and
    deleted ones are dropped when candidates are loaded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._building: set[str] = set()

    def get(self, model: str, *, check: bool = True) -> BM25SIndex:
        entry = self._entries.get(model)
        if entry is not None and not check:
            return entry.index
        watermark = _watermark(model)
        if entry is not None and not self._outdated(entry, watermark):
            return entry.index
        if entry is None or len(entry.index) <= settings.RAGAPP_LEXICAL_SYNC_MAX:
            with self._lock:
                entry = self._entries.get(model)
                if entry is None or self._outdated(entry, _watermark(model)):
                    index, built = _lexical_build(model)
                    entry = self._entries[model] = _Entry(index, built)
                return entry.index
        self._rebuild_in_background(model)
        return entry.index

    def _outdated(self, entry: _Entry, watermark: tuple[int, int]) -> bool:
        age = time.monotonic() - entry.built_at
        return (
            entry.stale or entry.watermark != watermark or age > settings.RAGAPP_LEXICAL_MAX_AGE_S
        )

    def _rebuild_in_background(self, model: str) -> None:
        with self._lock:
            if model in self._building:
                return
            self._building.add(model)

        def run() -> None:
            try:
                index, built = _lexical_build(model)
                self._entries[model] = _Entry(index, built)
            except Exception:  # a thread boundary: log it, the old index keeps serving
                logger.exception("lexical index rebuild failed", extra={"model": model})
            finally:
                connection.close()
                with self._lock:
                    self._building.discard(model)

        threading.Thread(target=run, name=f"bm25-rebuild-{model}", daemon=True).start()

    def forget(self, model: str, chunk_ids: list[int]) -> None:
        entry = self._entries.get(model)
        if entry is not None:
            entry.index.forget(chunk_ids)
            entry.stale = True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_lexical = _LexicalIndexes()


def chunk_lexical_search(
    query: str, *, model: str, collection_ids: list[int] | None, limit: int
) -> list[tuple[int, float]]:
    """BM25 over the chunks embedded with ``model`` (the same set dense search sees)."""
    return _lexical.get(model).search(query, collection_ids=collection_ids, limit=limit)


def chunk_lexical_scores(query: str, *, model: str, chunk_ids: list[int]) -> dict[int, float]:
    """The BM25 score of each given chunk for ``query`` (0.0 when it has no query term).

    Uses the index as it is, unchecked: it follows a search in the same request."""
    return _lexical.get(model, check=False).score_ids(query, chunk_ids)


def chunk_lexical_forget(*, model: str, chunk_ids: list[int]) -> None:
    """Tell this process's index that these chunks are gone (found missing at load time)."""
    _lexical.forget(model, chunk_ids)


class VectorBytes(Func):
    """A vector in pgvector's binary form (``vector_send``): a 2-byte dimension, 2 unused bytes,
    then big-endian float4s. 100 candidates' vectors as text are ~400 kB to send and parse
    (about 40 ms of a request under load); as bytes a quarter of that, read with one numpy call."""

    function = "vector_send"
    output_field = BinaryField()


def _vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def candidates_load(
    chunk_ids: list[int],
    *,
    model: str,
    collection_ids: list[int] | None = None,
    query_vector: np.ndarray | None = None,
    with_vectors: bool = False,
) -> list[Candidate]:
    """Chunks embedded by ``model`` as ``Candidate``s with their document, in the order of
    ``chunk_ids``; others (re-embedded or deleted since they were found) are left out, so a
    query vector is never compared with another model's vectors. Only chunks still in
    ``collection_ids`` (None: all): the BM25 index records each chunk's collection when it is
    built, and moving a document to another collection changes no watermark, so the collection
    is checked again here, in the query.

    With ``query_vector``, each gets ``scores["dense"]``, its exact cosine similarity, computed
    in the database: 100 candidates' vectors need not cross the wire for one number each.
    ``with_vectors`` also loads the stored vectors (for rerankers that use them).
    """
    qs = Chunk.objects.filter(id__in=chunk_ids, embedding_model=model)
    if collection_ids is not None:
        qs = qs.filter(document__collection_id__in=collection_ids)
    fields = ["id", "document_id", "document__title", "text", "page", "heading"]
    if query_vector is not None:
        qs = qs.annotate(distance=CosineDistance("embedding", query_vector.tolist()))
        fields.append("distance")
    if with_vectors:
        qs = qs.annotate(vector_bytes=VectorBytes("embedding"))
        fields.append("vector_bytes")
    by_id = {}
    for row in qs.values(*fields):
        candidate = Candidate(
            chunk_id=row["id"],
            document_id=str(row["document_id"]),
            document_title=row["document__title"],
            text=row["text"],
            page=row["page"],
            heading=row["heading"],
        )
        if query_vector is not None:
            candidate.scores["dense"] = 1.0 - float(row["distance"])
        if with_vectors:
            candidate.embedding = _vector(row["vector_bytes"])
        by_id[candidate.chunk_id] = candidate
    return [by_id[i] for i in chunk_ids if i in by_id]
