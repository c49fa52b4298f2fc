"""``make run``: the whole app on one machine: database, worker, web server, sample documents."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import psutil
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from ragapp import embedded_db
from ragapp.celery import worker_command


class Command(BaseCommand):
    help = (
        "Migrate, create the admin, start a Celery worker (with beat) and gunicorn, ingest the"
        " samples."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-sample", action="store_true", help="skip the sample documents")

    def handle(self, *args: Any, port: int, no_sample: bool, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("ensure_admin")
        metrics_dir = settings.DATA_DIR / "prometheus"  # per-process metric files, fresh per run
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        children = [
            # One worker for both ingestion queues, with Celery beat inside it (-B) for the
            # periodic tasks; in production each is its own service (docker-compose.yml).
            subprocess.Popen(
                worker_command(
                    hostname="worker@%h", beat_schedule=settings.DATA_DIR / "celerybeat-schedule"
                ),
                # A document's chunks are embedded in batches: one thread per core nearly
                # doubles that (23 -> 44 chunks/s here), where a web query gains nothing.
                env={"RAGAPP_EMBEDDER_THREADS": "0", **env},
            ),
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "ragapp.wsgi",
                    "--config",
                    str(settings.BASE_DIR / "ragapp" / "gunicorn_conf.py"),
                    "--bind",
                    f"127.0.0.1:{port}",
                ],
                env=env,
            ),
        ]
        stopping = False
        known: dict[int, psutil.Process] = {}

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            if not no_sample:
                call_command("ingest_sample")
            self.stdout.write(
                self.style.SUCCESS(
                    f"ragapp is starting on http://127.0.0.1:{port} (Ctrl-C stops everything)"
                )
            )
            while not stopping:
                known = _descendants(known)
                if any(child.poll() is not None for child in children):
                    self.stderr.write("a child process exited; stopping")
                    break
                time.sleep(0.5)
        finally:
            # Every process started here, grandchildren included (gunicorn's workers, celery's
            # pool): a child that dies first would otherwise leave them orphaned, holding the port.
            started = _descendants(known)
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            _, alive = psutil.wait_procs(list(started.values()), timeout=20)
            for process in alive:
                process.kill()
            psutil.wait_procs(alive, timeout=5)
            if settings.EMBEDDED_DATABASE:
                embedded_db.stop(settings.EMBEDDED_PGDATA)
            self.stdout.write("stopped")


def _descendants(known: dict[int, psutil.Process]) -> dict[int, psutil.Process]:
    """Every process started below this one, remembered even after its parent died."""
    for process in psutil.Process().children(recursive=True):
        known.setdefault(process.pid, process)
    return {pid: p for pid, p in known.items() if p.is_running()}
