"""Shared fixtures: the embedded PostgreSQL (via settings), personas, the sample knowledge base,
a real Celery worker process, and the loopback OpenAI-protocol server."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from ragapp import roles
from ragapp.celery import worker_command
from ragapp.observability import log_context_clear

pytest_plugins = ["tests.support.openai_server"]

PASSWORD = "correct-horse-battery-staple"
REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The test database server is ours alone (a separate data folder): stop it with the session.
    if settings.EMBEDDED_DATABASE and os.environ.get("RAGAPP_TEST_KEEP_DB") != "1":
        from ragapp import embedded_db

        embedded_db.stop(settings.EMBEDDED_PGDATA)


def _user(username: str, *, role: str, **flags: bool):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **flags)
    if not Group.objects.filter(name=role).exists():  # a transactional test's flush removed it
        roles.roles_sync()
    user.groups.add(Group.objects.get(name=role))
    user.raw_password = PASSWORD
    return user


@pytest.fixture(scope="session")
def _span_exporter():  # type: ignore[no-untyped-def]
    """Tracing as in production, but finished spans go to the SDK's in-memory exporter (the
    database store is tested on its own, see tests/integration/test_tracing.py)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ragapp.tracing import tracing_setup

    exporter = InMemorySpanExporter()
    tracing_setup(processors=[SimpleSpanProcessor(exporter)])
    return exporter


@pytest.fixture(autouse=True)
def _log_context() -> Iterator[None]:
    """Log fields a service bound (document, conversation...) end with the test that bound them,
    the way the request middleware and Celery's task hooks end them in the app."""
    yield
    log_context_clear()


@pytest.fixture(autouse=True)
def spans(_span_exporter):  # type: ignore[no-untyped-def]
    """The spans finished during this test (``spans.get_finished_spans()``); emptied before
    each test so a whole run does not keep every span in memory."""
    _span_exporter.clear()
    return _span_exporter


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    """An end user."""
    return _user("alice", role=roles.END_USER)


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    """An admin."""
    return _user("bob", role=roles.ADMIN, is_staff=True, is_superuser=True)


@pytest.fixture
def carol(db):  # type: ignore[no-untyped-def]
    """A reviewer: staff in the reviewer group, without superuser rights."""
    return _user("carol", role=roles.REVIEWER, is_staff=True)


@pytest.fixture
def mallory(db):  # type: ignore[no-untyped-def]
    """An outsider: a valid account that owns nothing of anyone else's."""
    return _user("mallory", role=roles.END_USER)


@pytest.fixture
def api_client():  # type: ignore[no-untyped-def]
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def client_for(api_client):  # type: ignore[no-untyped-def]
    """``client_for(user)``: an API client authenticated with the user's token."""
    from rest_framework.authtoken.models import Token

    def make(user):  # type: ignore[no-untyped-def]
        token, _ = Token.objects.get_or_create(user=user)
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return api_client

    return make


@pytest.fixture
def sample_kb(db):  # type: ignore[no-untyped-def]
    """The bundled sample knowledge base, ingested in-process (the worker path is tested apart)
    into the public default collection, as ``make run`` does."""
    from ingestion import services
    from ingestion.models import Document

    collection = services.collection_get_or_create(public=True)
    documents = []
    for path in sorted(settings.RAGAPP_SAMPLE_KB_DIR.iterdir()):
        if path.name.lower() == "readme.md":
            continue
        with path.open("rb") as fh:
            document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
        services.document_process(str(document.id))
        documents.append(Document.objects.get(id=document.id))
    assert all(d.status == Document.Status.READY for d in documents), [
        (d.original_name, d.error) for d in documents
    ]
    return documents


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def, type-arg]
    """A real ``celery worker`` process on the test database, started once per session."""
    from django.db import connection

    db = connection.settings_dict
    password = db["PASSWORD"] or ""
    if str(db["HOST"]).startswith("/"):  # a Unix socket folder (the embedded server)
        url = f"postgresql://{db['USER']}:{password}@/{db['NAME']}?host={db['HOST']}"
    else:
        url = f"postgresql://{db['USER']}:{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "PYTHONUNBUFFERED": "1",
    }
    log_path = settings.DATA_DIR / "test-worker.log"
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        worker_command(hostname=f"test-{os.getpid()}@%h", pool="solo"),
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while "ready." not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the celery worker did not start; see {log_path}")
        time.sleep(0.3)
    yield proc
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


@pytest.fixture
def worker(celery_worker_process, transactional_db):  # type: ignore[no-untyped-def]
    """The session's worker, for one test; afterwards it waits until the worker is idle, so the
    test database is not flushed under a task that is still writing."""
    from ingestion.models import Document

    yield celery_worker_process
    wait_until(
        lambda: (
            not Document.objects.filter(
                status__in=[Document.Status.QUEUED, Document.Status.PROCESSING]
            ).exists()
        ),
        timeout=120,
    )


def wait_until(predicate, *, timeout: float = 60.0, interval: float = 0.3):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# -- Ingestion: workers a test may kill -----------------------------------------------------------


class KillableWorker:
    """A ``celery worker`` subprocess (solo pool) on the test database that a test may SIGKILL."""

    def __init__(self, env: dict[str, str], log_path: Path, queue: str) -> None:
        self.log_path = log_path
        self.log = open(log_path, "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            worker_command(
                hostname=f"{queue}-{time.monotonic_ns()}@%h",
                pool="solo",
                queues=[f"{queue}.parse", f"{queue}.embed"],
            ),
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, offset: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "ready." not in self.log_path.read_text()[offset:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker did not start; see {self.log_path}")
            time.sleep(0.2)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: nothing is acknowledged, nothing cleans up
        self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture
def spawn_ingest_worker(django_db_setup, tmp_path):  # type: ignore[no-untyped-def]
    """``spawn_ingest_worker(queue, **env)``: start a worker consuming ``<queue>.parse`` and
    ``<queue>.embed`` (as its RAGAPP_QUEUE_PARSE and RAGAPP_QUEUE_EMBED) with extra environment
    variables and wait until it is ready; every worker is killed at the end."""
    from django.db import connection

    db = connection.settings_dict
    password = db["PASSWORD"] or ""
    if str(db["HOST"]).startswith("/"):
        url = f"postgresql://{db['USER']}:{password}@/{db['NAME']}?host={db['HOST']}"
    else:
        url = f"postgresql://{db['USER']}:{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    log_path = settings.DATA_DIR / "test-ingest-worker.log"
    started: list[KillableWorker] = []

    def spawn(queue: str, **extra: str) -> KillableWorker:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PYTHONUNBUFFERED": "1",
            "RAGAPP_QUEUE_PARSE": f"{queue}.parse",
            "RAGAPP_QUEUE_EMBED": f"{queue}.embed",
            **extra,
        }
        offset = len(log_path.read_text()) if log_path.exists() else 0
        worker = KillableWorker(env, log_path, queue)
        started.append(worker)
        worker.wait_ready(offset)
        return worker

    yield spawn
    for worker in started:
        if worker.proc.poll() is None:
            worker.kill()
