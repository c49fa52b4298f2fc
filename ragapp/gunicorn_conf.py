"""gunicorn settings for ``make run`` and the container image."""

from __future__ import annotations

import gc
import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "10"))
accesslog = "-"
errorlog = "-"


def post_worker_init(worker) -> None:  # type: ignore[no-untyped-def]
    # Load the embedding model before the first request, not during it.
    from retrieval.providers.registry import embedder

    embedder().load()  # type: ignore[attr-defined]
    from ingestion.providers.registry import instruction_classifier_load

    instruction_classifier_load()  # every answer's claims are judged
    # Django, torch and the model live as long as the worker: take them out of the garbage
    # collector's view, so a full collection stops walking them on a request's time (such
    # pauses took 60-280 ms each in bench-answer before).
    gc.freeze()


def child_exit(server, worker) -> None:  # type: ignore[no-untyped-def]
    # Prometheus multiprocess mode: drop the live gauges of a worker that is gone.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
