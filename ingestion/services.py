"""Writes for ingestion: accept an upload, process it through the pipeline, delete it."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ingestion.models import Chunk, Collection, Document
from ingestion.pipeline.chunk import chunk_blocks
from ingestion.pipeline.parse import ParseError, parse_file
from ragapp.errors import InvalidInput

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"


def collection_get_or_create(slug: str = DEFAULT_COLLECTION) -> Collection:
    collection, _ = Collection.objects.get_or_create(
        slug=slug, defaults={"name": slug.replace("-", " ").title()}
    )
    return collection


def _sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    fh.seek(0)
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    fh.seek(0)
    return digest.hexdigest()


def document_create(
    *,
    fh: IO[bytes],
    name: str,
    collection: Collection,
    user=None,
    title: str = "",  # type: ignore[no-untyped-def]
) -> tuple[Document, bool]:
    """Store an upload and queue it for ingestion. Returns ``(document, created)``.

    Identical content already in the collection is not stored or ingested again: the existing
    document comes back with ``created=False``.
    """
    fh.seek(0, 2)
    size = fh.tell()
    if size > settings.RAGAPP_MAX_UPLOAD_MB * 1024 * 1024:
        raise InvalidInput(
            f"The file is larger than the {settings.RAGAPP_MAX_UPLOAD_MB} MB limit.",
            code="file_too_large",
        )
    content_hash = _sha256(fh)
    existing = Document.objects.filter(collection=collection, content_hash=content_hash).first()
    if existing:
        return existing, False
    with transaction.atomic():
        document = Document(
            collection=collection,
            title=(title or Path(name).stem)[:300],
            original_name=Path(name).name[:300],
            size_bytes=size,
            content_hash=content_hash,
            uploaded_by=user,
        )
        document.file.save(Path(name).name, File(fh), save=False)
        document.save()
        _enqueue(document)
    logger.info("document stored", extra={"document": str(document.id), "bytes": size})
    return document, True


def document_reingest(*, document: Document) -> None:
    """Queue a document for ingestion again (its current chunks stay until the new ones land)."""
    with transaction.atomic():
        Document.objects.filter(id=document.id).update(
            status=Document.Status.QUEUED, error="", attempts=0, updated_at=timezone.now()
        )
        _enqueue(document)


def document_delete(*, document: Document) -> None:
    """Delete a document, its chunks (cascade) and its stored file."""
    storage, file_name = document.file.storage, document.file.name
    document.delete()
    if file_name:
        transaction.on_commit(lambda: storage.delete(file_name))


def _enqueue(document: Document) -> None:
    from ingestion.tasks import process_document

    doc_id = str(document.id)
    transaction.on_commit(lambda: process_document.delay(doc_id))


def _claim(document_id: str) -> Document | None:
    """Take the document for processing; None when it is final or already gone."""
    claimed = Document.objects.filter(
        Q(status=Document.Status.QUEUED) | Q(status=Document.Status.PROCESSING), id=document_id
    ).update(
        status=Document.Status.PROCESSING,
        attempts=F("attempts") + 1,
        started_at=timezone.now(),
        updated_at=timezone.now(),
        error="",
    )
    return Document.objects.get(id=document_id) if claimed else None


def _progress(document: Document, *, stage: str, done: int = 0, total: int = 0) -> None:
    Document.objects.filter(id=document.id).update(
        stage=stage, progress_done=done, progress_total=total, updated_at=timezone.now()
    )


def document_fail(document_id: str, reason: str) -> None:
    """Mark a document failed with a human-readable reason."""
    Document.objects.filter(id=document_id).update(
        status=Document.Status.FAILED,
        error=reason,
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    logger.warning("document failed", extra={"document": str(document_id), "reason": reason})


def document_process(document_id: str) -> None:
    """Run a queued document through parse -> chunk -> embed -> index.

    Safe to run twice: the claim is a conditional UPDATE, and the chunks are replaced in one
    transaction, so readers see either the old chunks or the new ones, never a mix.
    """
    from retrieval.providers.registry import embedder

    document = _claim(document_id)
    if document is None:
        logger.info("document not claimable", extra={"document": document_id})
        return
    started = time.perf_counter()
    try:
        parsed = parse_file(Path(document.file.path), filename=document.original_name)
    except ParseError as exc:
        document_fail(document_id, exc.reason)
        return
    except FileNotFoundError:
        document_fail(document_id, "the stored file is missing")
        return
    _progress(document, stage=Document.Stage.PARSED)

    emb = embedder()
    drafts = chunk_blocks(
        parsed.blocks,
        max_tokens=settings.RAGAPP_CHUNK_TOKENS,
        overlap=settings.RAGAPP_CHUNK_OVERLAP,
        count_tokens=emb.count_tokens,
    )
    if not drafts:
        document_fail(document_id, "no extractable text")
        return
    _progress(document, stage=Document.Stage.CHUNKED, total=len(drafts))

    vectors = []
    batch = settings.RAGAPP_EMBEDDING_BATCH
    for start in range(0, len(drafts), batch):
        vectors.extend(emb.embed_documents([d.text for d in drafts[start : start + batch]]))
        _progress(document, stage=Document.Stage.CHUNKED, done=len(vectors), total=len(drafts))
    _progress(document, stage=Document.Stage.EMBEDDED, done=len(drafts), total=len(drafts))

    title = document.title  # a title given at upload wins over the one found in the file
    if parsed.title and title == Path(document.original_name).stem:
        title = parsed.title[:300]
    with transaction.atomic():
        Chunk.objects.filter(document_id=document.id).delete()
        Chunk.objects.bulk_create(
            Chunk(
                document_id=document.id,
                index=d.index,
                text=d.text,
                page=d.page,
                heading=d.heading[:500],
                token_count=d.token_count,
                embedding=vector,
                embedding_model=emb.name,
            )
            for d, vector in zip(drafts, vectors, strict=True)
        )
        Document.objects.filter(id=document.id).update(
            title=title,
            content_type=parsed.content_type,
            status=Document.Status.READY,
            stage=Document.Stage.INDEXED,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )
    logger.info(
        "document ready",
        extra={
            "document": str(document.id),
            "chunks": len(drafts),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
