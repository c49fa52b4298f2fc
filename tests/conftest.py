"""Shared fixtures: the embedded PostgreSQL (via settings), personas, the sample knowledge base,
a real Celery worker process, and the loopback OpenAI-protocol server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

pytest_plugins = ["tests.support.openai_server"]

PASSWORD = "correct-horse-battery-staple"
REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The test database server is ours alone (a separate data folder): stop it with the session.
    if settings.EMBEDDED_DATABASE and os.environ.get("RAGAPP_TEST_KEEP_DB") != "1":
        from ragapp import embedded_db

        embedded_db.stop(settings.EMBEDDED_PGDATA)


def _user(username: str, **flags: bool):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **flags)
    user.raw_password = PASSWORD
    return user


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    """An end user."""
    return _user("alice")


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    """An admin."""
    return _user("bob", is_staff=True, is_superuser=True)


@pytest.fixture
def carol(db):  # type: ignore[no-untyped-def]
    """A reviewer (staff without superuser rights)."""
    return _user("carol", is_staff=True)


@pytest.fixture
def mallory(db):  # type: ignore[no-untyped-def]
    """An outsider: a valid account that owns nothing of anyone else's."""
    return _user("mallory")


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
    """The bundled sample knowledge base, ingested in-process (the worker path is tested apart)."""
    from ingestion import services
    from ingestion.models import Document

    collection = services.collection_get_or_create()
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
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ragapp",
            "worker",
            "--loglevel=INFO",
            "--concurrency=1",
            "--pool=solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            f"--hostname=test-{os.getpid()}@%h",
        ],
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
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "ragapp",
                "worker",
                "--loglevel=INFO",
                "--pool=solo",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-Q",
                queue,
                f"--hostname={queue}-{time.monotonic_ns()}@%h",
            ],
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
    """``spawn_ingest_worker(queue, **env)``: start a worker consuming ``queue`` with extra
    environment variables and wait until it is ready; every worker is killed at the end."""
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
            "RAGAPP_INGEST_QUEUE": queue,
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
