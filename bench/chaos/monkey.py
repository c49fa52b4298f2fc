"""The chaos run: upload documents while SIGKILLing the worker, restarting the broker and the
database at random moments, then account for every document.

It measures what the code does, and works around nothing: a document that is not ``ready`` or
``failed`` when the run settles is reported lost, with the state it is stuck in.

A poison document is simulated: whenever it is being processed, the worker's pool process is
SIGKILLed (as a parser segfault or an out-of-memory kill would), up to ``poison_max_kills`` times.
A system that caps deliveries fails it with a reason before that; one that does not keeps
redelivering it, and once the simulated crashes stop it goes through (reported ``contained:
false``).

Runs inside a Django process (``bench/chaos/run.py`` or the short test), which uploads through
``ingestion.services`` like the web app does.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.corpus import document_text, poison_text
from bench.load.stack import ManagedProcess, PrivateRedis, embedded_db_restart

logger = logging.getLogger("bench.chaos")


@dataclass(frozen=True)
class ChaosPlan:
    documents: int = 200
    kills: int = 20
    broker_restarts: int = 3
    db_restarts: int = 1
    window_s: float = 180.0  # faults happen at random moments within this many seconds
    upload_window_s: float = 120.0  # uploads are spread over this many seconds
    poison: bool = True
    poison_max_kills: int = 7
    settle_s: float = 180.0  # after the last fault: wait this long at most for final states
    seed: int = 7


@dataclass
class ChaosLog:
    kills: list[dict[str, Any]] = field(default_factory=list)
    poison_kills: int = 0
    broker_restarts: int = 0
    db_restarts: int = 0
    db_down_s: list[float] = field(default_factory=list)
    enqueue_errors: list[str] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)


def _db_call(fn: Callable[[], Any], default: Any = None) -> Any:
    """A harness read that survives the database restart (it retries on the next tick)."""
    from django.db import DatabaseError, InterfaceError, connections

    try:
        return fn()
    except (DatabaseError, InterfaceError):
        connections.close_all()
        return default


class ChaosRun:
    def __init__(
        self,
        plan: ChaosPlan,
        *,
        worker: ManagedProcess,
        redis: PrivateRedis | None = None,
        pgdata: Path | None = None,
    ) -> None:
        if plan.broker_restarts and redis is None:
            raise ValueError("broker restarts need the private Redis broker")
        if plan.db_restarts and pgdata is None:
            raise ValueError("database restarts need the embedded server's data folder")
        self.plan = plan
        self.worker = worker
        self.redis = redis
        self.pgdata = pgdata
        self.rng = random.Random(plan.seed)
        self.log = ChaosLog()
        self.ids: list[str] = []
        self.poison_id: str | None = None
        self._poison_seen: set[tuple[str, int]] = (
            set()
        )  # (stage, attempt): attempts restart per stage
        self.started = 0.0

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from ingestion import services

        collection = services.collection_get_or_create(f"chaos-{self.plan.seed}")
        self.started = time.monotonic()
        uploads = self._upload_schedule()
        faults = self._fault_schedule()
        self.worker.wait_ready()
        if self.plan.poison:
            self._upload(collection, *poison_text(seed=self.plan.seed), poison=True)
        while uploads or faults:
            now = self._t()
            while uploads and uploads[0][0] <= now:
                _, index = uploads.pop(0)
                self._upload(collection, *document_text(index, seed=self.plan.seed))
            if faults and faults[0][0] <= now:
                _, kind = faults.pop(0)
                self._fault(kind)
            self._tick()
            time.sleep(0.1)
        self._note("faults done")
        settled = self._settle()
        self._note("settled" if settled else "settle timeout")
        return self.report(settled=settled)

    def _t(self) -> float:
        return time.monotonic() - self.started

    def _note(self, what: str) -> None:
        self.log.events.append((round(self._t(), 2), what))
        logger.info("chaos: %s", what)

    def _upload_schedule(self) -> list[tuple[float, int]]:
        times = sorted(self.rng.uniform(0, self.plan.upload_window_s) for _ in self.ids_range())
        return list(zip(times, self.ids_range(), strict=True))

    def ids_range(self) -> range:
        return range(self.plan.documents)

    def _fault_schedule(self) -> list[tuple[float, str]]:
        kinds = (
            ["kill"] * self.plan.kills
            + ["broker"] * self.plan.broker_restarts
            + ["db"] * self.plan.db_restarts
        )
        start = min(5.0, self.plan.window_s / 4)
        return sorted((self.rng.uniform(start, self.plan.window_s), kind) for kind in kinds)

    def _upload(self, collection: Any, name: str, text: str, *, poison: bool = False) -> None:
        from ingestion import services

        fh = io.BytesIO(text.encode())
        try:
            document, _ = services.document_create(fh=fh, name=name, collection=collection)
        except Exception as exc:  # noqa: BLE001 - the broker or database is down: record it
            self.log.enqueue_errors.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
            from django.db import connections

            connections.close_all()
            found = _db_call(lambda: _document_id_by_name(collection, name))
            if found is None:  # never stored: the upload itself failed, as a user would see
                return
            document_id = found
        else:
            document_id = str(document.id)
        if poison:
            self.poison_id = document_id
        else:
            self.ids.append(document_id)

    # --- faults ---------------------------------------------------------------------------------

    def _fault(self, kind: str) -> None:
        if kind == "kill":
            self._kill()
        elif kind == "broker":
            assert self.redis is not None
            self._note("broker restart")
            self.redis.restart(down_s=1.0)
            self.log.broker_restarts += 1
        elif kind == "db":
            assert self.pgdata is not None
            self._note("database restart")
            from django.db import connections

            connections.close_all()
            self.log.db_down_s.append(round(embedded_db_restart(self.pgdata, down_s=2.0), 2))
            connections.close_all()
            self.log.db_restarts += 1

    def _kill(self) -> None:
        """SIGKILL the worker, preferably while it processes something; restart it at once.

        Alternates between the whole process group (a crashed container: nothing acknowledges
        or requeues the task) and the pool process only (the main process sees the loss).
        """
        from ingestion.models import Document

        self._ensure_worker()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            busy = _db_call(
                lambda: Document.objects.filter(status=Document.Status.PROCESSING).exists(), False
            )
            if busy:
                break
            self._tick()
            time.sleep(0.1)
        mode = "group" if len(self.log.kills) % 2 == 0 else "child"
        processing = _db_call(
            lambda: list(
                Document.objects.filter(status=Document.Status.PROCESSING).values_list(
                    "id", flat=True
                )
            ),
            [],
        )
        if mode == "group":
            self.worker.kill_group()
        elif not self.worker.kill_children():
            mode = "group"
            self.worker.kill_group()
        self.log.kills.append(
            {"t": round(self._t(), 2), "mode": mode, "processing": [str(i) for i in processing]}
        )
        self._note(f"kill {len(self.log.kills)} ({mode}) during {len(processing)} processing")
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if not self.worker.alive():
            self.worker.stop()
            time.sleep(0.5)
            self.worker.start()
        self.worker.wait_ready(timeout=180)

    def _tick(self) -> None:
        """Between faults: crash the worker whenever it picks the poison document up again."""
        if not self.worker.alive():
            self._ensure_worker()
        if self.poison_id is None or self.log.poison_kills >= self.plan.poison_max_kills:
            return
        from ingestion.models import Document
        from ingestion.services import EMBED_STAGES

        row = _db_call(
            lambda: (
                Document.objects.filter(id=self.poison_id)
                .values("status", "stage", "attempts")
                .first()
            )
        )
        if not row or row["status"] != Document.Status.PROCESSING:
            return
        delivery = ("embed" if row["stage"] in EMBED_STAGES else "parse", row["attempts"])
        if delivery in self._poison_seen:
            return
        self._poison_seen.add(delivery)
        time.sleep(0.3)  # let it get into parsing or embedding
        if self.worker.kill_children():
            self.log.poison_kills += 1
            self._note(f"poison crash {self.log.poison_kills} (attempt {row['attempts']})")

    def _settle(self) -> bool:
        from ingestion.models import Document

        every = [*self.ids, *([self.poison_id] if self.poison_id else [])]
        deadline = time.monotonic() + self.plan.settle_s
        while time.monotonic() < deadline:
            self._tick()
            open_count = _db_call(
                lambda: (
                    Document.objects.filter(id__in=every)
                    .exclude(status__in=[Document.Status.READY, Document.Status.FAILED])
                    .count()
                ),
                -1,
            )
            if open_count == 0:
                return True
            time.sleep(0.5)
        return False

    # --- accounting -----------------------------------------------------------------------------

    def report(self, *, settled: bool) -> dict[str, Any]:
        audit = audit_documents(self.ids)
        poison = None
        if self.poison_id:
            poison = audit_documents([self.poison_id])["documents_detail"][0]
            poison["crashes_injected"] = self.log.poison_kills
            poison["contained"] = poison["status"] == "failed" and bool(poison["error"])
        kill_modes = Counter(k["mode"] for k in self.log.kills)
        return {
            "documents": len(self.ids),
            "documents_requested": self.plan.documents,
            "lost": audit["lost"],
            "duplicate_chunks": audit["duplicate_chunks"],
            "kills": len(self.log.kills),
            "kill_modes": dict(kill_modes),
            "kills_during_processing": sum(1 for k in self.log.kills if k["processing"]),
            "broker_restarts": self.log.broker_restarts,
            "db_restarts": self.log.db_restarts,
            "db_down_s": self.log.db_down_s,
            "settled": settled,
            "statuses": audit["statuses"],
            "failed_without_reason": audit["failed_without_reason"],
            "failure_reasons": audit["failure_reasons"],
            "lost_detail": audit["lost_detail"],
            "index_gaps": audit["index_gaps"],
            "ready_without_chunks": audit["ready_without_chunks"],
            "enqueue_errors": self.log.enqueue_errors,
            "poison": poison,
            "throughput": throughput(self.ids),
            "plan": asdict(self.plan),
            "elapsed_s": round(self._t(), 1),
            "events": self.log.events,
        }


def throughput(ids: list[str]) -> dict[str, Any]:
    """Documents and chunks per second between the first and the last document finishing
    (so a worker's warm-up before its first document is not counted)."""
    from django.db.models import Count, Max, Min

    from ingestion.models import Document

    ready = Document.objects.filter(id__in=ids, status=Document.Status.READY)
    span = ready.aggregate(first=Min("finished_at"), last=Max("finished_at"), n=Count("id"))
    chunks = sum(d.chunks.count() for d in ready)
    if not span["n"] or span["n"] < 2:
        return {"documents": span["n"], "chunks": chunks}
    seconds = (span["last"] - span["first"]).total_seconds()
    return {
        "documents": span["n"],
        "chunks": chunks,
        "seconds": round(seconds, 1),
        "documents_per_s": round((span["n"] - 1) / seconds, 3) if seconds else None,
        "chunks_per_s": round(chunks * (span["n"] - 1) / span["n"] / seconds, 2)
        if seconds
        else None,
    }


def _document_id_by_name(collection: Any, name: str) -> str | None:
    from ingestion.models import Document

    found = (
        Document.objects.filter(collection=collection, original_name=name)
        .values_list("id", flat=True)
        .first()
    )
    return str(found) if found else None


def audit_documents(ids: list[str]) -> dict[str, Any]:
    """Every document's final state, lost ones with where they are stuck, and duplicate chunks."""
    from django.db.models import Count

    from ingestion.models import Chunk, Document

    final = {Document.Status.READY, Document.Status.FAILED}
    rows = {
        str(d["id"]): d
        for d in Document.objects.filter(id__in=ids).values(
            "id", "original_name", "status", "stage", "attempts", "error", "updated_at"
        )
    }
    chunk_stats = {
        str(r["document_id"]): r
        for r in Chunk.objects.filter(document_id__in=ids)
        .values("document_id")
        .annotate(
            n=Count("id"), indexes=Count("index", distinct=True), texts=Count("text", distinct=True)
        )
    }
    detail = []
    lost_detail = []
    index_gaps = []
    duplicates = 0
    for document_id in ids:
        row = rows.get(document_id)
        stats = chunk_stats.get(document_id, {"n": 0, "indexes": 0, "texts": 0})
        duplicates += (stats["n"] - stats["indexes"]) + (stats["n"] - stats["texts"])
        if row is None:
            lost_detail.append({"id": document_id, "status": "missing"})
            continue
        entry = {
            "id": document_id,
            "name": row["original_name"],
            "status": row["status"],
            "stage": row["stage"],
            "attempts": row["attempts"],
            "error": row["error"],
            "chunks": stats["n"],
        }
        detail.append(entry)
        if row["status"] not in final:
            lost_detail.append(entry)
        if row["status"] == Document.Status.READY and stats["n"]:
            indexes = sorted(
                Chunk.objects.filter(document_id=document_id).values_list("index", flat=True)
            )
            if indexes != list(range(len(indexes))):
                index_gaps.append(document_id)
    return {
        "statuses": dict(Counter(e["status"] for e in detail)),
        "lost": len(lost_detail),
        "lost_detail": lost_detail,
        "duplicate_chunks": duplicates,
        "index_gaps": index_gaps,
        "ready_without_chunks": [
            e["id"] for e in detail if e["status"] == "ready" and not e["chunks"]
        ],
        "failed_without_reason": [
            e["id"] for e in detail if e["status"] == "failed" and not e["error"]
        ],
        "failure_reasons": dict(
            Counter(e["error"][:80] for e in detail if e["status"] == "failed")
        ),
        "documents_detail": detail,
    }
