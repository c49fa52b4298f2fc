"""Writes for ingestion: accept an upload, process it through the pipeline, sweep stuck
documents, re-embed after a model change, delete.

Processing is durable by construction (docs/ingestion.md):
- a worker claims a document with a conditional UPDATE that sets a fresh `claim_token`; only
  the holder of that token may publish chunks, so two deliveries never both publish;
- embedded batches are staged in `PendingChunk` as they finish; a redelivered run re-parses,
  keeps the staged rows whose text and model still match and embeds only the missing ones;
- publishing replaces the document's chunks in one transaction (unique (document, index));
- every delivery counts in `attempts`; past `RAGAPP_INGEST_MAX_ATTEMPTS` the document fails;
- progress updates are the heartbeat: `document_sweep` re-queues documents with none for
  `RAGAPP_INGEST_STALE_S` (their worker died, or the broker lost the message).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ingestion.models import Chunk, Collection, Document, PendingChunk
from ingestion.pipeline.chunk import ChunkDraft, chunk_blocks
from ingestion.pipeline.injection import injection_reason
from ingestion.pipeline.parse import Block, ParsedDocument, ParseError, parse_file
from ragapp.errors import InvalidInput

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "default"
_HEARTBEAT_S = 1.0  # at most one progress write per second


class TransientIngestError(Exception):
    """The environment failed (database, OCR engine, parser model), not the file: retry later."""


class StageTimeout(Exception):
    def __init__(self, stage: str, limit: float) -> None:
        super().__init__(f"{stage} took longer than {limit:.0f} s")
        self.reason = f"{stage} took longer than the {limit:.0f} s limit"


class LostClaim(Exception):
    """Another delivery took the document over (this one was presumed dead): stop quietly."""


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
        _enqueue(document)
    logger.info("document stored", extra={"document": str(document.id), "bytes": size})
    return document, True


def document_reingest(*, document: Document) -> None:
    """Queue a document for ingestion again (its current chunks stay until the new ones land)."""
    with transaction.atomic():
        Document.objects.filter(id=document.id).update(
            status=Document.Status.QUEUED,
            error="",
            attempts=0,
            claim_token=None,
            updated_at=timezone.now(),
        )
        _enqueue(document)


def document_delete(*, document: Document) -> None:
    """Delete a document, its chunks and attachments (cascade) and its stored file."""
    names = [(document.file.storage, document.file.name)]
    names += [(a.file.storage, a.file.name) for a in document.attachments.all()]
    document.delete()
    for storage, file_name in names:
        if file_name:
            transaction.on_commit(lambda s=storage, n=file_name: s.delete(n))


def _enqueue(document: Document) -> None:
    from ingestion.tasks import process_document

    doc_id = str(document.id)
    queue = settings.RAGAPP_INGEST_QUEUE
    transaction.on_commit(lambda: process_document.apply_async((doc_id,), queue=queue))


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


# -- Processing -------------------------------------------------------------------------------


@dataclass
class _Run:
    """One delivery of one document: its claim and its bookkeeping."""

    document: Document
    token: uuid.UUID
    last_beat: float = 0.0

    @property
    def id(self) -> str:
        return str(self.document.id)

    def update(self, **fields: Any) -> None:
        """Write fields (and the heartbeat) if this run still holds the claim."""
        updated = Document.objects.filter(id=self.document.id, claim_token=self.token).update(
            updated_at=timezone.now(), **fields
        )
        if not updated:
            raise LostClaim(self.id)

    def progress(self, done: int, total: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_beat >= _HEARTBEAT_S or done == total:
            self.last_beat = now
            self.update(progress_done=done, progress_total=total)


def _claim(document_id: str) -> _Run | None:
    """Take the document: queued, or processing with no heartbeat for the stale period (its
    worker died). None when it is final, gone, or alive in another worker."""
    token = uuid.uuid4()
    stale = timezone.now() - timedelta(seconds=settings.RAGAPP_INGEST_STALE_S)
    claimed = Document.objects.filter(
        Q(status=Document.Status.QUEUED)
        | Q(status=Document.Status.PROCESSING, updated_at__lt=stale)
        | Q(status=Document.Status.PROCESSING, claim_token__isnull=True),
        id=document_id,
    ).update(
        status=Document.Status.PROCESSING,
        attempts=F("attempts") + 1,
        claim_token=token,
        started_at=timezone.now(),
        updated_at=timezone.now(),
        error="",
    )
    if not claimed:
        return None
    return _Run(Document.objects.get(id=document_id), token)


def document_process(document_id: str) -> None:
    """Run a queued document through parse -> chunk -> embed -> index.

    Safe to run twice and to be killed at any point; see the module docstring.
    Raises `TransientIngestError` when retrying later may succeed.
    """
    run = _claim(document_id)
    if run is None:
        logger.info("document not claimable", extra={"document": document_id})
        return
    if run.document.attempts > settings.RAGAPP_INGEST_MAX_ATTEMPTS:
        document_fail(document_id, _gave_up_reason(run.document))
        return
    started = time.perf_counter()
    try:
        chunks = _process(run)
    except LostClaim:
        logger.warning("document taken over by another delivery", extra={"document": run.id})
        return
    except ParseError as exc:
        if not exc.permanent:
            raise TransientIngestError(exc.reason) from exc
        document_fail(document_id, exc.reason)
        return
    except StageTimeout as exc:
        document_fail(document_id, exc.reason)
        return
    except FileNotFoundError:
        document_fail(document_id, "the stored file is missing")
        return
    logger.info(
        "document ready",
        extra={
            "document": run.id,
            "chunks": chunks,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )


def _process(run: _Run) -> int:
    from retrieval.providers.registry import embedder

    document = run.document
    timings: dict[str, float] = {}
    with _stage(timings, "parse"):
        parsed = _parse(run, timings)
    run.update(stage=Document.Stage.PARSED, page_count=parsed.pages, stage_seconds=timings)
    _store_attachments(document, parsed)

    emb = embedder()
    with _stage(timings, "chunk"):
        drafts = chunk_blocks(
            parsed.blocks,
            max_tokens=settings.RAGAPP_CHUNK_TOKENS,
            overlap=settings.RAGAPP_CHUNK_OVERLAP,
            count_tokens=token_counter(emb),
        )
        flags = _flags(drafts, parsed.blocks)
    if not drafts:
        if parsed.attachments:  # an e-mail with nothing but attachments
            drafts = [ChunkDraft(0, _attachment_summary(parsed), None, parsed.title, 0)]
            flags = [""]
        else:
            raise ParseError("no extractable text")
    run.update(
        stage=Document.Stage.CHUNKED,
        progress_done=0,
        progress_total=len(drafts),
        stage_seconds=timings,
    )

    with _stage(timings, "embed"):
        _embed_missing(run, emb, drafts, flags)
    run.update(stage=Document.Stage.EMBEDDED, stage_seconds=timings)

    with _stage(timings, "index"):
        _publish(run, parsed, timings)
    Document.objects.filter(id=document.id).update(stage_seconds=timings)  # with "index" now
    return len(drafts)


def token_counter(emb: Any) -> Callable[[str], int]:
    """`emb.count_tokens`, made fast for the chunker, which counts many overlapping candidates.

    WordPiece (MiniLM's tokenizer) splits on whitespace before anything else, so a text's token
    count is the sum of its words' counts; each distinct word is tokenized once per document.
    """
    per_word = functools.lru_cache(maxsize=200_000)(emb.count_tokens)

    def count(text: str) -> int:
        return sum(per_word(word) for word in text.split())

    return count


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)
    limit = settings.RAGAPP_INGEST_STAGE_LIMITS_S.get(name)
    if limit and timings[name] > limit:
        raise StageTimeout(name, limit)


def _parse(run: _Run, timings: dict[str, float]) -> ParsedDocument:
    limit = settings.RAGAPP_INGEST_STAGE_LIMITS_S.get("parse")
    started = time.perf_counter()

    def on_progress(done: int, total: int) -> None:
        run.progress(done, total)
        _test_pause("parse", done=done)
        if limit and time.perf_counter() - started > limit:
            raise StageTimeout("parse", limit)

    run.update(progress_done=0, progress_total=0)
    return parse_file(
        Path(run.document.file.path),
        filename=run.document.original_name,
        on_progress=on_progress,
        ocr_languages=settings.RAGAPP_OCR_LANGUAGES,
    )


def _flags(drafts: list[ChunkDraft], blocks: list[Block]) -> list[str]:
    hidden = [b.text[:80] for b in blocks if b.hidden]
    return [injection_reason(d.text, hidden=any(h in d.text for h in hidden)) for d in drafts]


def _embed_missing(run: _Run, emb: Any, drafts: list[ChunkDraft], flags: list[str]) -> None:
    """Embed what is not staged yet, batch by batch, staging each batch as it is done."""
    staged = {
        index: (text, model)
        for index, text, model in PendingChunk.objects.filter(document_id=run.id).values_list(
            "index", "text", "embedding_model"
        )
    }
    keep = {
        d.index for d in drafts if staged.get(d.index) == (d.text, emb.name)
    }  # staged by an earlier delivery from the same file and model
    PendingChunk.objects.filter(document_id=run.id).exclude(index__in=keep).delete()
    missing = [d for d in drafts if d.index not in keep]
    done = len(keep)
    run.progress(done, len(drafts), force=True)
    limit = settings.RAGAPP_INGEST_STAGE_LIMITS_S.get("embed")
    started = time.perf_counter()
    batch = settings.RAGAPP_EMBEDDING_BATCH
    for start in range(0, len(missing), batch):
        part = missing[start : start + batch]
        vectors = emb.embed_documents([d.text for d in part])
        PendingChunk.objects.bulk_create(
            [
                PendingChunk(
                    document_id=run.id,
                    index=d.index,
                    text=d.text,
                    page=d.page,
                    heading=d.heading[:500],
                    token_count=d.token_count,
                    embedding=vector,
                    embedding_model=emb.name,
                    flagged=bool(flags[d.index]),
                    flag_reason=flags[d.index][:200],
                )
                for d, vector in zip(part, vectors, strict=True)
            ],
            ignore_conflicts=True,
        )
        done += len(part)
        run.progress(done, len(drafts))
        _test_pause("embed", done=done)
        if limit and time.perf_counter() - started > limit:
            raise StageTimeout("embed", limit)


_PUBLISH_SQL = """
INSERT INTO ingestion_chunk (document_id, "index", text, page, heading, token_count, embedding,
    embedding_model, flagged, flag_reason, created_at)
SELECT document_id, "index", text, page, heading, token_count, embedding, embedding_model,
    flagged, flag_reason, now()
FROM ingestion_pendingchunk WHERE document_id = %s ORDER BY "index"
"""


def _publish(run: _Run, parsed: ParsedDocument, timings: dict[str, float]) -> None:
    """Swap the staged chunks in for the old ones and mark the document ready, atomically."""
    document = run.document
    title = document.title  # a title given at upload wins over the one found in the file
    if parsed.title and title == Path(document.original_name).stem:
        title = parsed.title[:300]
    with transaction.atomic():
        locked = (
            Document.objects.select_for_update()
            .filter(id=document.id, claim_token=run.token)
            .exists()
        )
        if not locked:
            raise LostClaim(run.id)
        Chunk.objects.filter(document_id=document.id).delete()
        with connection.cursor() as cursor:
            cursor.execute(_PUBLISH_SQL, [document.id])
        PendingChunk.objects.filter(document_id=document.id).delete()
        _test_pause("index")
        Document.objects.filter(id=document.id).update(
            title=title,
            content_type=parsed.content_type,
            status=Document.Status.READY,
            stage=Document.Stage.INDEXED,
            claim_token=None,
            stage_seconds=timings,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )


def _store_attachments(document: Document, parsed: ParsedDocument) -> None:
    """Queue each attachment as a child document (idempotent: identical content is skipped)."""
    import io

    for attachment in parsed.attachments:
        try:
            document_create(
                fh=io.BytesIO(attachment.data),
                name=attachment.name,
                collection=document.collection,
                user=document.uploaded_by,
                parent=document,
            )
        except InvalidInput as exc:
            logger.warning(
                "attachment skipped",
                extra={"document": str(document.id), "name": attachment.name, "why": str(exc)},
            )


def _attachment_summary(parsed: ParsedDocument) -> str:
    names = ", ".join(a.name for a in parsed.attachments)
    return f"{parsed.title or 'E-mail'}: attachments {names}"


def _gave_up_reason(document: Document) -> str:
    return (
        f"gave up after {settings.RAGAPP_INGEST_MAX_ATTEMPTS} attempts; the last one stopped "
        f"after the {document.stage} stage (the worker crashed or was killed)"
    )


def _test_pause(point: str, *, done: int = 0) -> None:
    """Test hook: with RAGAPP_TEST_PAUSE_AT=<point> the worker stops here (touching
    RAGAPP_TEST_PAUSE_FILE) so a test can kill it at a known place. Never set in production."""
    if os.environ.get("RAGAPP_TEST_PAUSE_AT") != point:
        return
    if point in ("parse", "embed") and done < 2:
        return  # pause mid-stage, after some work is done
    marker = os.environ.get("RAGAPP_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(point)
    time.sleep(float(os.environ.get("RAGAPP_TEST_PAUSE_S", "300")))


# -- Sweeping and re-embedding ----------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    requeued: list[str]
    failed: list[str]


def document_sweep(*, stale_after_s: float | None = None) -> SweepResult:
    """Re-queue documents stuck in queued/processing with no progress for the stale period;
    those already delivered `RAGAPP_INGEST_MAX_ATTEMPTS` times end failed instead."""
    stale_s = settings.RAGAPP_INGEST_STALE_S if stale_after_s is None else stale_after_s
    cutoff = timezone.now() - timedelta(seconds=stale_s)
    stuck = Document.objects.filter(
        status__in=[Document.Status.QUEUED, Document.Status.PROCESSING], updated_at__lt=cutoff
    )
    requeued: list[str] = []
    failed: list[str] = []
    for document in stuck:
        if document.attempts >= settings.RAGAPP_INGEST_MAX_ATTEMPTS:
            document_fail(str(document.id), _gave_up_reason(document))
            failed.append(str(document.id))
            continue
        with transaction.atomic():
            # Conditional: a worker that just made progress keeps the document.
            taken = Document.objects.filter(id=document.id, updated_at__lt=cutoff).update(
                status=Document.Status.QUEUED, claim_token=None, updated_at=timezone.now()
            )
            if taken:
                _enqueue(document)
                requeued.append(str(document.id))
    if requeued or failed:
        logger.warning("ingestion sweep", extra={"requeued": requeued, "failed": failed})
    return SweepResult(requeued=requeued, failed=failed)


def chunk_reembed_stale(*, batch_size: int | None = None) -> int:
    """Re-embed chunks whose `embedding_model` is not the configured embedder's, in place,
    batch by batch (retrieval filters by model, so it never mixes the two). Returns the count."""
    from retrieval.providers.registry import embedder

    emb = embedder()
    size = batch_size or settings.RAGAPP_EMBEDDING_BATCH
    total = 0
    while True:
        rows = list(
            Chunk.objects.exclude(embedding_model=emb.name)
            .order_by("id")
            .values_list("id", "text")[:size]
        )
        if not rows:
            break
        vectors = emb.embed_documents([text for _, text in rows])
        with transaction.atomic():
            for (chunk_id, _), vector in zip(rows, vectors, strict=True):
                Chunk.objects.filter(id=chunk_id).update(embedding=vector, embedding_model=emb.name)
        total += len(rows)
    if total:
        logger.info("chunks re-embedded", extra={"chunks": total, "model": emb.name})
    return total


def chunk_models_stale() -> bool:
    """Whether any chunk was embedded by another model than the configured one."""
    from retrieval.providers.registry import embedder

    return Chunk.objects.exclude(embedding_model=embedder().name).exists()
