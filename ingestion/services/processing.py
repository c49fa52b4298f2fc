"""Processing a document, in two stages that are separate Celery tasks on separate queues:

- **parse** (`document_parse`, queue `RAGAPP_QUEUE_PARSE`): parse (OCR included) -> clean ->
  chunk -> flag. The drafts are staged in `PendingChunk` without vectors and, in the same
  transaction, the document is handed to the embed stage (status queued, stage chunked);
- **embed** (`document_embed`, queue `RAGAPP_QUEUE_EMBED`): embed the staged drafts that have no
  vector of the current model, batch by batch, then publish them.

Durable by construction (docs/ingestion.md):
- each stage claims the document with a conditional UPDATE that sets a fresh `claim_token`;
  only the holder of that token may hand the document on or publish its chunks, so two
  deliveries never both publish;
- vectors are written to the staged rows as batches finish; a redelivered embed stage embeds
  only the rows without a vector of the current model, and a re-parse keeps the staged rows
  (and their vectors) whose content did not change;
- publishing replaces the document's chunks in one transaction (unique (document, index));
- every claim counts in `attempts` (reset when a stage hands over); past
  `RAGAPP_INGEST_MAX_ATTEMPTS` deliveries of one stage the document fails;
- progress updates are the heartbeat: `document_sweep` re-queues documents with none for
  `RAGAPP_INGEST_STALE_S` to the task of the stage they are in.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Length
from django.utils import timezone

from ingestion.models import Chunk, Document, PendingChunk
from ingestion.pipeline.chunk import ChunkDraft, chunk_blocks
from ingestion.pipeline.injection import injection_reason
from ingestion.pipeline.parse import Block, ParsedDocument, ParseError, ParseLimits, parse_file
from ingestion.providers.registry import instruction_reasons
from ingestion.services.documents import (
    EMBED_STAGES,
    document_create,
    document_enqueue,
    document_fail,
)
from ragapp.errors import InvalidInput
from ragapp.observability import log_context_update
from ragapp.tracing import span, span_set, traced

logger = logging.getLogger(__name__)

_HEARTBEAT_S = 1.0  # at most one progress write per second


class TransientIngestError(Exception):
    """The environment failed (database, OCR engine, parser model), not the file: retry later."""


class StageTimeout(Exception):
    def __init__(self, stage: str, limit: float) -> None:
        super().__init__(f"{stage} took longer than {limit:.0f} s")
        self.reason = f"{stage} took longer than the {limit:.0f} s limit"


class LostClaim(Exception):
    """Another delivery took the document over (this one was presumed dead): stop quietly."""


@dataclass
class _Run:
    """One delivery of one stage of one document: its claim and its bookkeeping."""

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

    def lock(self) -> None:
        """Inside a transaction: lock the document row, or raise if the claim is gone."""
        if (
            not Document.objects.select_for_update()
            .filter(id=self.document.id, claim_token=self.token)
            .exists()
        ):
            raise LostClaim(self.id)


def _claim(document_id: str, *, embed: bool) -> _Run | None:
    """Take the document for the parse or the embed stage: queued for that stage, or
    processing in it with no heartbeat for the stale period (its worker died). None when it is
    final, gone, alive in another worker or waiting for the other stage."""
    token = uuid.uuid4()
    stale = timezone.now() - timedelta(seconds=settings.RAGAPP_INGEST_STALE_S)
    in_stage = Q(stage__in=EMBED_STAGES) if embed else ~Q(stage__in=EMBED_STAGES)
    claimed = Document.objects.filter(
        Q(status=Document.Status.QUEUED)
        | Q(status=Document.Status.PROCESSING, updated_at__lt=stale)
        | Q(status=Document.Status.PROCESSING, claim_token__isnull=True),
        in_stage,
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
    """Both stages in this process, one after the other (tests, benchmarks, evals).

    Raises `TransientIngestError` when retrying later may succeed.
    """
    if document_parse(document_id, hand_off=False):
        document_embed(document_id)


def document_parse(document_id: str, *, hand_off: bool = True) -> bool:
    """Parse, chunk and flag a queued document and stage its drafts for embedding.

    With ``hand_off`` the embed task is queued when the drafts are committed. Returns whether
    the document is now waiting for the embed stage. Safe to run twice and to be killed at any
    point; raises `TransientIngestError` when retrying later may succeed.
    """
    return _run_stage(document_id, embed=False, work=lambda run: _parse_stage(run, hand_off))


def document_embed(document_id: str) -> bool:
    """Embed a parsed document's staged drafts with the current model and publish them.

    Returns whether the document is now ready. Safe to run twice and to be killed at any point.
    """
    return _run_stage(document_id, embed=True, work=_embed_stage)


@traced("ragapp.ingest")
def _run_stage(document_id: str, *, embed: bool, work: Callable[[_Run], None]) -> bool:
    stage = "embed" if embed else "parse"
    log_context_update(document=document_id)
    span_set(document_id=document_id, task_stage=stage)
    run = _claim(document_id, embed=embed)
    if run is None:
        logger.info("document not claimable", extra={"document": document_id, "stage": stage})
        span_set(outcome="not_claimable")
        return False
    span_set(attempt=run.document.attempts, bytes=run.document.size_bytes)
    if run.document.attempts > settings.RAGAPP_INGEST_MAX_ATTEMPTS:
        document_fail(document_id, gave_up_reason(run.document))
        return False
    started = time.perf_counter()
    try:
        work(run)
    except LostClaim:
        logger.warning("document taken over by another delivery", extra={"document": run.id})
        return False
    except ParseError as exc:
        if not exc.permanent:
            raise TransientIngestError(exc.reason) from exc
        document_fail(document_id, exc.reason)
        return False
    except StageTimeout as exc:
        document_fail(document_id, exc.reason)
        return False
    except FileNotFoundError:
        document_fail(document_id, "the stored file is missing")
        return False
    seconds = round(time.perf_counter() - started, 2)
    span_set(outcome="ready" if embed else "parsed")
    logger.info(f"{stage} stage done", extra={"document": run.id, "seconds": seconds})
    return True


# -- Parse stage ------------------------------------------------------------------------------


def _parse_stage(run: _Run, hand_off: bool) -> None:
    from retrieval.providers.registry import embedder

    document = run.document
    timings: dict[str, float] = {}
    with _stage(timings, "parse", run):
        parsed = _parse(run)
        span_set(pages=parsed.pages, blocks=len(parsed.blocks), attachments=len(parsed.attachments))
    title = document.title  # a title given at upload wins over the one found in the file
    if parsed.title and title == Path(document.original_name).stem:
        title = parsed.title[:300]
    run.update(
        stage=Document.Stage.PARSED,
        page_count=parsed.pages,
        title=title,
        content_type=parsed.content_type,
        stage_seconds=timings,
    )
    _store_attachments(document, parsed)

    with _stage(timings, "chunk", run):
        drafts = chunk_blocks(
            parsed.blocks,
            max_tokens=settings.RAGAPP_CHUNK_TOKENS,
            overlap=settings.RAGAPP_CHUNK_OVERLAP,
            count_tokens=token_counter(embedder()),  # the tokenizer only, not the model
        )
        flags = _flags(drafts, parsed.blocks)
        span_set(chunks=len(drafts), flagged=sum(1 for f in flags if f))
    if not drafts:
        if not parsed.attachments:
            raise ParseError("no extractable text")
        # An e-mail with nothing but attachments: one chunk that names them.
        drafts = [ChunkDraft(0, _attachment_summary(parsed), None, parsed.title, 0)]
        flags = [""]
    with transaction.atomic():
        run.lock()
        _stage_drafts(run.id, drafts, flags)
        Document.objects.filter(id=document.id).update(
            status=Document.Status.QUEUED,
            stage=Document.Stage.CHUNKED,
            claim_token=None,
            attempts=0,  # the embed stage has its own delivery cap
            progress_done=0,
            progress_total=len(drafts),
            stage_seconds=timings,
            updated_at=timezone.now(),
        )
        if hand_off:
            document_enqueue(document_id=run.id, stage=Document.Stage.CHUNKED)


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
def _stage(timings: dict[str, float], name: str, run: _Run) -> Iterator[None]:
    started = time.perf_counter()
    with span(f"ragapp.ingest.{name}", document_id=run.id):
        yield
    timings[name] = round(time.perf_counter() - started, 3)
    limit = settings.RAGAPP_INGEST_STAGE_LIMITS_S.get(name)
    if limit and timings[name] > limit:
        raise StageTimeout(name, limit)


def _parse(run: _Run) -> ParsedDocument:
    limit = settings.RAGAPP_INGEST_STAGE_LIMITS_S.get("parse")
    started = time.perf_counter()

    def on_progress(done: int, total: int) -> None:
        run.progress(done, total)
        pause_for_tests("parse", done=done)
        if limit and time.perf_counter() - started > limit:
            raise StageTimeout("parse", limit)

    run.update(progress_done=0, progress_total=0)
    return parse_file(
        Path(run.document.file.path),
        filename=run.document.original_name,
        on_progress=on_progress,
        ocr_languages=settings.RAGAPP_OCR_LANGUAGES,
        limits=parse_limits(),
    )


def parse_limits() -> ParseLimits:
    """The bomb limits from settings (RAGAPP_MAX_UNCOMPRESSED_MB and friends)."""
    return ParseLimits(
        max_uncompressed_bytes=settings.RAGAPP_MAX_UNCOMPRESSED_MB * 1024 * 1024,
        max_ratio=settings.RAGAPP_MAX_ARCHIVE_RATIO,
        max_entries=settings.RAGAPP_MAX_ARCHIVE_ENTRIES,
        max_image_pixels=int(settings.RAGAPP_MAX_IMAGE_MEGAPIXELS * 1_000_000),
    )


def _flags(drafts: list[ChunkDraft], blocks: list[Block]) -> list[str]:
    hidden = [b.text[:80] for b in blocks if b.hidden]
    return [injection_reason(d.text, hidden=any(h in d.text for h in hidden)) for d in drafts]


_DRAFT_FIELDS = ("index", "text", "page", "heading", "token_count", "flagged", "flag_reason")


def _stage_drafts(document_id: str, drafts: list[ChunkDraft], flags: list[str]) -> None:
    """Make the staged rows exactly ``drafts``; rows staged earlier with the same content keep
    their vectors (a re-parse after a crash embeds only what is new)."""
    wanted = {
        d.index: (d.index, d.text, d.page, d.heading[:500], d.token_count, bool(flag), flag[:200])
        for d, flag in zip(drafts, flags, strict=True)
    }
    staged = PendingChunk.objects.filter(document_id=document_id)
    keep = [row[0] for row in staged.values_list(*_DRAFT_FIELDS) if wanted.get(row[0]) == row]
    staged.exclude(index__in=keep).delete()
    kept = set(keep)
    PendingChunk.objects.bulk_create(
        (
            PendingChunk(document_id=document_id, **dict(zip(_DRAFT_FIELDS, row, strict=True)))
            for index, row in wanted.items()
            if index not in kept
        ),
        batch_size=1000,
    )


def _store_attachments(document: Document, parsed: ParsedDocument) -> None:
    """Queue each attachment as a child document (idempotent: identical content is skipped)."""
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


# -- Embed stage ------------------------------------------------------------------------------


def _embed_stage(run: _Run) -> None:
    from retrieval.providers.registry import embedder

    emb = embedder()
    timings = dict(run.document.stage_seconds)
    if not PendingChunk.objects.filter(document_id=run.id).exists():
        # Nothing staged (cannot happen through the services): parse again rather than
        # publish a document without chunks.
        with transaction.atomic():
            run.lock()
            Document.objects.filter(id=run.id).update(
                status=Document.Status.QUEUED, stage=Document.Stage.STORED, claim_token=None
            )
            document_enqueue(document_id=run.id, stage=Document.Stage.STORED)
        return
    with _stage(timings, "embed", run):
        _embed_missing(run, emb)
    run.update(stage=Document.Stage.EMBEDDED, stage_seconds=timings)
    with _stage(timings, "index", run):
        _publish(run, timings)
        span_set(chunks=Chunk.objects.filter(document_id=run.id).count())
    Document.objects.filter(id=run.id).update(stage_seconds=timings)  # with "index" now


def _embed_missing(run: _Run, emb: Any) -> None:
    """Give every staged row a vector of the current model, batch by batch, writing each
    batch as it is done. Shortest texts first: batches of similar lengths waste less work on
    padding (the rows are keyed by index, so their order here does not matter).

    The instruction classifier judges each batch's rows the rules left unflagged, in the same
    write as their vectors, so a redelivered task judges only the rows it embeds."""
    staged = PendingChunk.objects.filter(document_id=run.id)
    total = staged.count()
    missing = list(
        staged.exclude(embedding_model=emb.name)
        .order_by(Length("text"), "index")
        .values_list("id", "text", "flagged", "flag_reason")
    )
    done = total - len(missing)
    span_set(chunks=total, staged=done, embedded=len(missing))
    run.progress(done, total, force=True)
    limit = settings.RAGAPP_INGEST_STAGE_LIMITS_S.get("embed")
    started = time.perf_counter()
    batch = settings.RAGAPP_EMBEDDING_BATCH
    for start in range(0, len(missing), batch):
        part = missing[start : start + batch]
        vectors = emb.embed_documents([text for _, text, _, _ in part])
        judged = iter(instruction_reasons([text for _, text, flagged, _ in part if not flagged]))
        rows = []
        for (row_id, _, flagged, reason), vector in zip(part, vectors, strict=True):
            if not flagged:
                reason = next(judged)
            rows.append(
                PendingChunk(
                    id=row_id,
                    embedding=vector,
                    embedding_model=emb.name,
                    flagged=bool(reason),
                    flag_reason=reason[:200],
                )
            )
        PendingChunk.objects.bulk_update(
            rows, ["embedding", "embedding_model", "flagged", "flag_reason"]
        )
        done += len(part)
        run.progress(done, total)
        pause_for_tests("embed", done=done)
        if limit and time.perf_counter() - started > limit:
            raise StageTimeout("embed", limit)


_PUBLISH_SQL = """
INSERT INTO ingestion_chunk (document_id, "index", text, page, heading, token_count, embedding,
    embedding_model, flagged, flag_reason, created_at)
SELECT document_id, "index", text, page, heading, token_count, embedding, embedding_model,
    flagged, flag_reason, now()
FROM ingestion_pendingchunk WHERE document_id = %s ORDER BY "index"
"""


def _publish(run: _Run, timings: dict[str, float]) -> None:
    """Swap the staged chunks in for the old ones and mark the document ready, atomically."""
    with transaction.atomic():
        run.lock()
        Chunk.objects.filter(document_id=run.id).delete()
        with connection.cursor() as cursor:
            cursor.execute(_PUBLISH_SQL, [run.id])
        PendingChunk.objects.filter(document_id=run.id).delete()
        pause_for_tests("index")
        Document.objects.filter(id=run.id).update(
            status=Document.Status.READY,
            stage=Document.Stage.INDEXED,
            claim_token=None,
            stage_seconds=timings,
            finished_at=timezone.now(),
            updated_at=timezone.now(),
        )


def gave_up_reason(document: Document) -> str:
    return (
        f"gave up after {settings.RAGAPP_INGEST_MAX_ATTEMPTS} attempts; the last one stopped "
        f"after the {document.stage} stage (the worker crashed or was killed)"
    )


def pause_for_tests(point: str, *, done: int = 0) -> None:
    """Test hook: with RAGAPP_TEST_PAUSE_AT=<point> the worker stops here (touching
    RAGAPP_TEST_PAUSE_FILE) so a test can kill it at a known place. Never set in production."""
    if os.environ.get("RAGAPP_TEST_PAUSE_AT") != point:
        return
    if point in ("parse", "embed", "reembed") and done < 2:
        return  # pause mid-stage, after some work is done
    marker = os.environ.get("RAGAPP_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(point)
    time.sleep(float(os.environ.get("RAGAPP_TEST_PAUSE_S", "300")))
