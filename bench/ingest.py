"""Ingestion speed: the messy-docs corpus and the 400-page PDF, end to end vs the raw embedder.

    make bench-ingest     (own data folder .data/bench-ingest; writes bench/results/ingestion.json)

The pipeline runs in this process exactly as a worker runs it (`document_process`: parse, chunk,
embed, stage, publish) on the embedded PostgreSQL. In the same run, the raw embedder is timed
on the chunk texts the pipeline produced (same batch size), so machine load affects both alike.
Peak RSS is this process's high-water mark (what a worker would need). Load average is recorded
with each figure: the machine is shared, re-run when it is quiet.

The faster backend (`RAGAPP_EMBEDDER=onnx`) is compared with torch in the same run: chunks/s of
both on the same sample of the corpus's chunks (`fast_embedder_speedup`, bar >= 1.5), and SciFact
test nDCG@10 of the served ranking through the retrieval benchmark with each
(`fast_embedder_ndcg_delta`, onnx minus torch, bar |delta| <= 0.01). The SciFact embeddings are
cached on disk by model and text hash (.data/embedding-cache), so only a first run embeds the
5,183 abstracts (a few minutes per backend on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retrieval.providers.protocols import Embedder

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
CORPUS = DATA / "messy-docs"
BIG_PDF = "pdf2image-memory-error-test-400p.pdf"
BIG_DOCX = "handbook-872p.docx"
# Each large document alone in a fresh process, as a worker that just started would ingest it:
# its peak RSS is that document's own (bar: 1.5 GB).
BIG_FILES = {"pdf_400p": BIG_PDF, "docx_872p": BIG_DOCX}
RAW_SAMPLE = 600  # chunks timed through the raw embedder per measurement


class PeakRss:
    """Samples this process's RSS (psutil) every 50 ms; `peak_mb` is the highest seen."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def ingest(paths: list[Path], slug: str) -> dict[str, object]:
    from ingestion import services
    from ingestion.models import Chunk, Collection, Document

    Document.objects.filter(collection__slug=slug).delete()
    Collection.objects.filter(slug=slug).delete()
    collection = services.collection_get_or_create(slug)
    load_before = os.getloadavg()
    started = time.perf_counter()
    with PeakRss() as rss:
        for path in paths:
            with path.open("rb") as fh:
                document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
            services.document_process(str(document.id))
        for child in Document.objects.filter(collection=collection, status="queued"):
            services.document_process(str(child.id))
    wall = time.perf_counter() - started
    documents = Document.objects.filter(collection=collection)
    chunks = Chunk.objects.filter(document__collection=collection).count()
    per_stage: dict[str, float] = {}
    for timings in documents.values_list("stage_seconds", flat=True):
        for stage, seconds in timings.items():
            per_stage[stage] = round(per_stage.get(stage, 0.0) + seconds, 1)
    return {
        "files_total": len(paths),
        "files_final": documents.filter(
            parent__isnull=True, status__in=["ready", "failed"]
        ).count(),
        "documents_incl_attachments": documents.count(),
        "ready": documents.filter(status="ready").count(),
        "failed": dict(documents.filter(status="failed").values_list("original_name", "error")),
        "chunks": chunks,
        "wall_s": round(wall, 1),
        "pipeline_chunks_per_s": round(chunks / wall, 2),
        "seconds_per_stage_sum": per_stage,
        "peak_rss_mb": rss.peak_mb,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def chunk_sample(slug: str) -> list[str]:
    """A fixed random sample of the chunk texts the pipeline produced for a collection."""
    from ingestion.models import Chunk

    texts = list(
        Chunk.objects.filter(document__collection__slug=slug)
        .order_by("id")
        .values_list("text", flat=True)
    )
    random.Random(0).shuffle(texts)
    return texts[:RAW_SAMPLE]


def raw_embedder_speed(texts: list[str], embedder: Embedder) -> float:
    """Chunks per second of the bare embedder on ``texts``, in one call as the pipeline makes
    it for a document (the embedder batches them, `RAGAPP_EMBEDDING_BATCH` at a time)."""
    started = time.perf_counter()
    embedder.embed_documents(texts)
    return round(len(texts) / (time.perf_counter() - started), 2)


@contextmanager
def embedder_of_kind(kind: str) -> Iterator[Embedder]:
    """The process's embedder switched to ``kind`` (`RAGAPP_EMBEDDER`) inside the block."""
    from django.test import override_settings

    from retrieval.providers.registry import embedder

    embedder.cache_clear()
    try:
        with override_settings(RAGAPP_EMBEDDER=kind):
            emb = embedder()
            emb.load()  # model load (and the one-time ONNX export) is start-up, not embedding
            yield emb
    finally:
        embedder.cache_clear()


def fast_embedder_speed(texts: list[str]) -> dict[str, object]:
    """torch and onnx on the same texts, each timed twice (alternating) and the best kept."""
    speeds: dict[str, list[float]] = {"torch": [], "onnx": []}
    for _ in range(2):
        for kind in speeds:
            with embedder_of_kind(kind) as emb:
                speeds[kind].append(raw_embedder_speed(texts, emb))
    torch_s, onnx_s = max(speeds["torch"]), max(speeds["onnx"])
    return {
        "torch_chunks_per_s": torch_s,
        "onnx_chunks_per_s": onnx_s,
        "speedup": round(onnx_s / torch_s, 3),
        "chunks": len(texts),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def fast_embedder_quality() -> dict[str, object]:
    """SciFact test nDCG@10 per retrieval stage with torch and with onnx vectors."""
    from retrieval.benchmarks.scifact import scifact_run

    ndcg: dict[str, dict[str, float]] = {}
    for kind in ("torch", "onnx"):
        with embedder_of_kind(kind):
            stages = scifact_run(split="test")
        ndcg[kind] = {stage: round(m["ndcg@10"], 4) for stage, m in stages.items()}
    return {
        "ndcg@10": ndcg,
        "delta_served": round(ndcg["onnx"]["reranked"] - ndcg["torch"]["reranked"], 4),
        "delta_dense": round(ndcg["onnx"]["dense"] - ndcg["torch"]["dense"], 4),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def single_in_fresh_process(name: str) -> dict[str, object]:
    """``ingest`` of one corpus file in a new process (same data folder), its JSON back."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.ingest", "--single", name],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith('{"files_total"'))
    return json.loads(line)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "ingestion.json"))
    parser.add_argument("--skip-corpus", action="store_true", help="only the large documents")
    parser.add_argument("--single", default="", help=argparse.SUPPRESS)  # one file, JSON out
    parser.add_argument(
        "--skip-scifact", action="store_true", help="no SciFact comparison of the embedders"
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    from ingestion.providers.registry import instruction_classifier_load
    from retrieval.providers.registry import embedder

    call_command("migrate", interactive=False, verbosity=0)
    emb = embedder()
    emb.load()  # model load is start-up, not ingestion
    instruction_classifier_load()  # likewise the classifier's references and langid
    if not CORPUS.is_dir():
        raise SystemExit(f"corpus not found at {CORPUS}")
    result: dict[str, object] = {"corpus": str(CORPUS), "embedder": emb.name}
    if args.single:
        one = ingest([CORPUS / args.single], "bench-big")
        one["embedder_chunks_per_s"] = raw_embedder_speed(chunk_sample("bench-big"), emb)
        one["ratio"] = round(one["pipeline_chunks_per_s"] / one["embedder_chunks_per_s"], 3)  # type: ignore[operator]
        print(json.dumps(one))
        return

    big = {}
    for key, name in BIG_FILES.items():
        big[key] = single_in_fresh_process(name)
        result[key] = big[key]
        print(json.dumps({key: big[key]}, indent=2), flush=True)

    if not args.skip_corpus:
        files = sorted(p for p in CORPUS.iterdir() if p.name != "README.md")
        corpus = ingest(files, "bench-corpus")
        corpus["embedder_chunks_per_s"] = raw_embedder_speed(chunk_sample("bench-corpus"), emb)
        corpus["ratio"] = round(
            corpus["pipeline_chunks_per_s"] / corpus["embedder_chunks_per_s"],  # type: ignore[operator]
            3,
        )
        result["corpus"] = corpus
        print(json.dumps({"corpus": corpus}, indent=2), flush=True)
        headline = corpus
    else:
        headline = big["pdf_400p"]
    fast = fast_embedder_speed(chunk_sample("bench-corpus" if "corpus" in result else "bench-big"))
    result["fast_embedder"] = fast
    print(json.dumps({"fast_embedder": fast}, indent=2), flush=True)
    if not args.skip_scifact:
        quality = fast_embedder_quality()
        result["fast_embedder_scifact"] = quality
        print(json.dumps({"fast_embedder_scifact": quality}, indent=2), flush=True)
    result.update(
        {
            "files_total": headline["files_total"],
            "files_final": headline["files_final"],
            "embedder_chunks_per_s": headline["embedder_chunks_per_s"],
            "pipeline_chunks_per_s": headline["pipeline_chunks_per_s"],
            "ratio": headline["ratio"],
            "peak_rss_mb": max(b["peak_rss_mb"] for b in [*big.values(), headline]),  # type: ignore[type-var]
            "peak_rss_mb_large_documents": {k: b["peak_rss_mb"] for k, b in big.items()},
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "fast_embedder_speedup": fast["speedup"],
            "fast_embedder_ndcg_delta": (
                None if args.skip_scifact else result["fast_embedder_scifact"]["delta_served"]  # type: ignore[index]
            ),
        }
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
