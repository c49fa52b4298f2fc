"""The Celery app: configuration from Django settings (``CELERY_*``), the queues, beat's
schedule, and the one command line every worker of this project is started with."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import task_prerun, worker_init, worker_process_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")

app = Celery("ragapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _tune_sqlalchemy_broker(sender: Celery, **kwargs: object) -> None:
    """The embedded default's broker is a table in PostgreSQL, polled by the worker.

    kombu polls every second by default; the interval is set on the transport class because
    passing it through ``broker_transport_options`` crashed the worker (see FIELD-NOTES).
    """
    from django.conf import settings

    if str(settings.CELERY_BROKER_URL).startswith("sqla+"):
        from kombu.transport import sqlalchemy

        sqlalchemy.Transport.polling_interval = settings.CELERY_SQLA_POLLING_INTERVAL


@worker_init.connect
@worker_process_init.connect
def _tracing_setup(**kwargs: object) -> None:
    """Traces in the worker: set up in the main process (enough for the solo and threads pools;
    forked pool processes inherit it) and in each pool process (a no-op when inherited)."""
    from ragapp.tracing import tracing_setup

    tracing_setup()


@task_prerun.connect
def _log_context_clear(**kwargs: object) -> None:
    """A task's log fields (document, user...) must not leak into the next task."""
    from ragapp.observability import log_context_clear

    log_context_clear()


@app.on_after_configure.connect
def _queues_and_schedule(sender: Celery, **kwargs: object) -> None:
    """Declare the default queue and the two ingestion queues, so a worker started without
    ``-Q`` consumes all three; and give beat the periodic tasks of ``RAGAPP_PERIODIC_TASKS``."""
    from django.conf import settings

    names = [
        sender.conf.task_default_queue,
        settings.RAGAPP_QUEUE_PARSE,
        settings.RAGAPP_QUEUE_EMBED,
    ]
    # Each queue bound by its own name: a Queue without a routing key would get the default
    # one ("celery"), and a message for one queue would then land in all three.
    sender.conf.task_queues = [Queue(name, routing_key=name) for name in dict.fromkeys(names)]
    sender.conf.beat_schedule = {
        name: {"task": name, "schedule": float(every_s)}
        for name, every_s in settings.RAGAPP_PERIODIC_TASKS.items()
        if every_s > 0
    }


def worker_command(
    *,
    hostname: str,
    concurrency: int = 1,
    pool: str = "prefork",
    queues: list[str] | None = None,
    beat_schedule: Path | None = None,
) -> list[str]:
    """The command line of a worker process: `make run`, the tests and the benchmarks all start
    workers with it. No ``queues``: every declared queue. ``beat_schedule``: run Celery beat
    inside the worker (``-B``), keeping its state in that file."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "ragapp",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        # No cluster chatter: nothing here reads worker events, and mingle delays start-up.
        "--without-heartbeat",
        "--without-gossip",
        "--without-mingle",
        f"--hostname={hostname}",
    ]
    if queues:
        argv += ["-Q", ",".join(queues)]
    if beat_schedule is not None:
        argv += ["-B", f"--schedule={beat_schedule}"]
    return argv
