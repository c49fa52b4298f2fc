"""Documents: accept an upload, queue a stage, re-ingest, fail, release, delete."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from ingestion.models import Collection, Document, PendingChunk
from ragapp.errors import InvalidInput

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"
# Stages after which the embed task takes over: the drafts are staged in PendingChunk.
EMBED_STAGES = (Document.Stage.CHUNKED, Document.Stage.EMBEDDED)


def collection_get_or_create(slug: str = DEFAULT_COLLECTION, *, public: bool = False) -> Collection:
    """The collection ``slug``, created when missing; ``public=True`` also opens it to every
    signed-in user (see ``Collection.public``)."""
    collection, _ = Collection.objects.get_or_create(
        slug=slug, defaults={"name": slug.replace("-", " ").title(), "public": public}
    )
    if public and not collection.public:
        collection.public = True
        collection.save(update_fields=["public"])
    return collection


def _sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    fh.seek(0)
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
    fh.seek(0)
    return digest.hexdigest()


def upload_check_limits(*, sizes: list[int]) -> None:
    """Refuse an upload request over the count or size limits, before anything is stored."""
    if len(sizes) > settings.RAGAPP_MAX_UPLOAD_FILES:
        raise InvalidInput(
            f"At most {settings.RAGAPP_MAX_UPLOAD_FILES} files per upload.",
            code="too_many_files",
        )
    if any(size > settings.RAGAPP_MAX_UPLOAD_MB * 1024 * 1024 for size in sizes):
        raise InvalidInput(
            f"The file is larger than the {settings.RAGAPP_MAX_UPLOAD_MB} MB limit.",
            code="file_too_large",
        )


def document_create(
    *,
    fh: IO[bytes],
    name: str,
    collection: Collection,
    user: Any = None,
    title: str = "",
    parent: Document | None = None,
) -> tuple[Document, bool]:
    """Store an upload and queue it for ingestion. Returns ``(document, created)``.

    Identical content already in the collection is not stored or ingested again: the existing
    document comes back with ``created=False``.
    """
    fh.seek(0, 2)
    size = fh.tell()
    upload_check_limits(sizes=[size])
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
            parent=parent,
        )
        document.file.save(Path(name).name or "attachment", File(fh), save=False)
        document.save()
        document_enqueue(document_id=str(document.id), stage=document.stage)
    logger.info("document stored", extra={"document": str(document.id), "bytes": size})
    return document, True


def document_reingest(*, document: Document) -> None:
    """Queue a document for ingestion again (its current chunks stay until the new ones land)."""
    with transaction.atomic():
        Document.objects.filter(id=document.id).update(
            status=Document.Status.QUEUED,
            stage=Document.Stage.STORED,
            error="",
            attempts=0,
            claim_token=None,
            updated_at=timezone.now(),
        )
        document_enqueue(document_id=str(document.id), stage=Document.Stage.STORED)


def document_delete(*, document: Document) -> None:
    """Delete a document, its chunks and attachments (cascade) and its stored file."""
    names = [(document.file.storage, document.file.name)]
    names += [(a.file.storage, a.file.name) for a in document.attachments.all()]
    document.delete()
    for storage, file_name in names:
        if file_name:
            transaction.on_commit(lambda s=storage, n=file_name: s.delete(n))


def document_enqueue(*, document_id: str, stage: str) -> None:
    """Queue the task that continues a document from ``stage``, when the transaction commits.

    Parsing (OCR included) and embedding are separate tasks on separate queues
    (`RAGAPP_QUEUE_PARSE`, `RAGAPP_QUEUE_EMBED`), so slow scans never hold up embedding.
    """
    from ingestion.tasks import embed_document, parse_document

    if stage in EMBED_STAGES:
        task, queue = embed_document, settings.RAGAPP_QUEUE_EMBED
    else:
        task, queue = parse_document, settings.RAGAPP_QUEUE_PARSE
    transaction.on_commit(lambda: task.apply_async((document_id,), queue=queue))


def document_fail(document_id: str, reason: str) -> None:
    """Mark a document failed with a human-readable reason and drop its staged chunks."""
    Document.objects.filter(id=document_id).update(
        status=Document.Status.FAILED,
        error=reason[:1000],
        claim_token=None,
        finished_at=timezone.now(),
        updated_at=timezone.now(),
    )
    PendingChunk.objects.filter(document_id=document_id).delete()
    logger.warning("document failed", extra={"document": str(document_id), "reason": reason})


def document_release(document_id: str) -> None:
    """Give a claimed document back to the queue (a retry will claim it again)."""
    Document.objects.filter(id=document_id, status=Document.Status.PROCESSING).update(
        status=Document.Status.QUEUED, claim_token=None, updated_at=timezone.now()
    )
