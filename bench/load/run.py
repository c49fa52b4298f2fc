"""``make bench-load``: the real stack under 50 streaming chat users and a faulty provider.

Starts, all on 127.0.0.1 and private to this run (its own data folder, wiped first):
a ``redis-server`` (broker and shared circuit-breaker state), the embedded PostgreSQL, a Celery
worker (which ingests the sample knowledge base), gunicorn (``--web-workers`` x ``--threads``),
and the faulty provider (``bench/load/fake_provider.py``). Then Locust, headless and bounded,
through these phases (seconds from the start of the run):

    warmup    users ramp up; not counted
    main      the faulty provider (20% 429 + Retry-After 1-5 s, 5% 500, 2% cut streams);
              its last ``--burst`` seconds are ``burst`` (ten sessions of one account, whose day
              quota is nearly spent, ask as fast as ten users), the ``--burst`` seconds before
              are ``baseline``, to compare the other users' latency
    outage    every provider call gets 503: how soon the circuit breaker opens, how fast the
              degraded (extractive) answers come back
    recovery  the faulty provider again: how soon the breaker closes

Writes ``bench/results/load.json``. ``--smoke`` runs every phase briefly with fewer users.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODEL = "gpt-4o-mini"  # the fake provider answers to any name; this one has a price
BUDGET_TOKENS = 2_000_000  # per user and day: the chat users stay far below it

logger = logging.getLogger("bench.load")


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    assert url.startswith("http://127.0.0.1:"), url  # loopback only
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--duration", type=float, default=300, help="seconds of the main phase")
    parser.add_argument("--burst", type=float, default=60)
    parser.add_argument("--outage", type=float, default=60)
    parser.add_argument("--recovery", type=float, default=60)
    parser.add_argument("--web-workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=24)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--provider-port", type=int, default=8791)
    parser.add_argument("--redis-port", type=int, default=6392)
    parser.add_argument("--data-dir", default=str(REPO / ".data" / "bench-load"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "load.json"))
    parser.add_argument("--smoke", action="store_true", help="short phases, 10 users")
    args = parser.parse_args(argv)
    if args.smoke:
        args.users, args.warmup, args.duration = min(args.users, 10), 10, 60
        args.burst, args.outage, args.recovery = 20, 30, 45
    return args


class Phases:
    """The phase timeline, published to Locust through a file."""

    def __init__(self, args: argparse.Namespace, path: Path) -> None:
        self.path = path
        main_end = args.warmup + args.duration
        outage_end = main_end + args.outage
        self.bounds = [
            ("warmup", 0.0, args.warmup),
            ("main", args.warmup, main_end - 2 * args.burst),
            ("baseline", main_end - 2 * args.burst, main_end - args.burst),
            ("burst", main_end - args.burst, main_end),
            ("outage", main_end, outage_end),
            ("recovery", outage_end, outage_end + args.recovery),
        ]
        self.total = outage_end + args.recovery
        self.started_wall = 0.0

    def set(self, name: str) -> None:
        self.path.write_text(name)

    def window(self, name: str) -> tuple[float, float]:
        for phase, start, end in self.bounds:
            if phase == name:
                return self.started_wall + start, self.started_wall + end
        raise KeyError(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sys.path.insert(0, str(REPO))
    from bench.load.stack import PrivateRedis, load_average, stop_on_signals

    stop_on_signals()

    redis = PrivateRedis(args.redis_port, data_dir / "redis.log").start()
    provider_url = f"http://127.0.0.1:{args.provider_port}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "ragapp.settings",
            "RAGAPP_DATA_DIR": str(data_dir),
            "CELERY_BROKER_URL": redis.url,
            "RAGAPP_REDIS_URL": f"redis://127.0.0.1:{args.redis_port}/1",
            "OPENAI_BASE_URL": f"{provider_url}/v1",
            "OPENAI_API_KEY": "bench-not-a-key",
            "RAGAPP_OPENAI_MODEL": MODEL,
            # Every turn goes to the provider: the caches would hide its faults.
            "RAGAPP_CACHE_EXACT": "false",
            "RAGAPP_CACHE_SEMANTIC": "false",
            "RAGAPP_BUDGET_USER_DAY_TOKENS": str(BUDGET_TOKENS),
            "WEB_CONCURRENCY": str(args.web_workers),
            "GUNICORN_THREADS": str(args.threads),
            "RAGAPP_LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings

    from bench.load.stack import ManagedProcess, celery_worker, gunicorn, process_env
    from ragapp import embedded_db

    stack: list[ManagedProcess] = []
    result: dict[str, Any] = {"load_average_before": load_average()}
    try:
        env = process_env()
        worker = celery_worker(env, data_dir / "worker.log").start()
        stack.append(worker)
        tokens = prepare_data(worker, data_dir)
        provider = ManagedProcess(
            name="provider",
            argv=[
                sys.executable,
                "-m",
                "bench.load.fake_provider",
                "--port",
                str(args.provider_port),
                "--max-seconds",
                str(int(args_total(args) + 900)),
            ],
            env=env,
            log_path=data_dir / "provider.log",
            ready_marker='"mode"',
        ).start()
        stack.append(provider)
        provider.wait_ready(timeout=60)
        web = gunicorn(env, data_dir / "gunicorn.log", port=args.port).start()
        stack.append(web)
        base = f"http://127.0.0.1:{args.port}"
        _wait_ready(base)
        result.update(drive(args, data_dir, base, provider_url, tokens, web=web, worker=worker))
    finally:
        for process in reversed(stack):
            process.stop()
        redis.stop()
        embedded_db.stop(settings.EMBEDDED_PGDATA)
    result["load_average_after"] = load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict | list)}, indent=2))
    print(f"wrote {out}")
    return 0


def args_total(args: argparse.Namespace) -> float:
    return float(args.warmup + args.duration + args.outage + args.recovery)


def _wait_ready(base: str) -> None:
    from bench.load.stack import wait_for

    wait_for(lambda: _get(f"{base}/readyz")[0] == 200, timeout=180, interval=1, what="readyz")


def prepare_data(worker: Any, data_dir: Path) -> dict[str, Any]:
    """Migrate, ingest the sample knowledge base through the worker, create the users."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from agent.models import UsageRecord
    from bench.load.stack import wait_for
    from ingestion import services
    from ingestion.models import Document

    call_command("migrate", interactive=False, verbosity=0)
    worker.wait_ready(timeout=180)
    collection = services.collection_get_or_create(public=True)
    ids = []
    for path in sorted(settings.RAGAPP_SAMPLE_KB_DIR.iterdir()):
        if path.name.lower() == "readme.md":
            continue
        with path.open("rb") as fh:
            document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
        ids.append(document.id)
    wait_for(
        lambda: (
            Document.objects.filter(id__in=ids, status=Document.Status.READY).count() == len(ids)
        ),
        timeout=300,
        interval=1,
        what="sample documents ready",
    )
    users = get_user_model().objects
    tokens = [
        Token.objects.get_or_create(user=users.create_user(f"bench-{i}"))[0].key for i in range(60)
    ]
    burst = users.create_user("bench-burst")
    # This account has spent nearly all of today's quota: a few more turns and it is over.
    UsageRecord.objects.create(
        provider="openai",
        model=MODEL,
        route="bench.seed",
        input_tokens=BUDGET_TOKENS - 6_000,
        user=burst,
    )
    payload = {"users": tokens, "burst": Token.objects.get_or_create(user=burst)[0].key}
    (data_dir / "tokens.json").write_text(json.dumps(payload))
    return payload


def rss_mb(process: Any) -> float:
    """Resident memory of a managed process and its children (gunicorn's or Celery's workers)."""
    import psutil

    try:
        root = psutil.Process(process.proc.pid)
        members = [root, *root.children(recursive=True)]
        return round(sum(p.memory_info().rss for p in members) / 2**20, 1)
    except psutil.Error:
        return 0.0


def drive(
    args: argparse.Namespace,
    data_dir: Path,
    base: str,
    provider_url: str,
    tokens: Any,
    *,
    web: Any,
    worker: Any,
) -> dict[str, Any]:
    """Run Locust through the phases; measure the breaker from its shared state in Redis."""
    import redis as redis_client

    from bench.load.analyse import analyse
    from bench.load.stack import load_average

    phases = Phases(args, data_dir / "phase")
    phases.set("warmup")
    turns_path = data_dir / "turns.jsonl"
    env = {
        **os.environ,
        "BENCH_TOKENS": str(data_dir / "tokens.json"),
        "BENCH_TURNS": str(turns_path),
        "BENCH_PHASE": str(phases.path),
    }
    users = args.users + 10  # + the ten sessions of the burst account (idle outside "burst")
    locust = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("locust")),
            "-f",
            str(REPO / "bench" / "load" / "locustfile.py"),
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            str(max(5, users // 5)),
            "--run-time",
            f"{int(phases.total)}s",
            "--stop-timeout",
            "100",
            "--host",
            base,
            "--csv",
            str(data_dir / "locust"),
            "--only-summary",
        ],
        env=env,
        cwd=REPO,
        stdout=open(data_dir / "locust.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    phases.started_wall = time.time()
    started = time.monotonic()
    breaker = redis_client.Redis.from_url(os.environ["RAGAPP_REDIS_URL"])
    open_key = f"ragapp:breaker:openai/{MODEL}:open"
    failures_key = f"ragapp:breaker:openai/{MODEL}:failures"
    marks: dict[str, Any] = {"loads": []}
    current = "warmup"
    next_load = 0.0
    while locust.poll() is None and time.monotonic() - started < phases.total + 200:
        elapsed = time.monotonic() - started
        name = next((n for n, s, e in phases.bounds if s <= elapsed < e), "done")
        if name != current:
            current = name
            phases.set(name)
            marks[f"{name}_start"] = time.time()
            if name == "outage":
                _get(f"{provider_url}/control/outage")
            elif name == "recovery":
                _get(f"{provider_url}/control/normal")
        if current == "outage" and "breaker_open" not in marks and breaker.exists(open_key):
            marks["breaker_open"] = time.time()
        if (
            current == "recovery"
            and "breaker_closed" not in marks
            and not breaker.exists(open_key)
            and not breaker.exists(failures_key)
        ):
            marks["breaker_closed"] = time.time()
        if elapsed >= next_load:
            marks["loads"].append(
                {
                    "t": round(elapsed),
                    **load_average(),
                    "web_rss_mb": rss_mb(web),
                    "worker_rss_mb": rss_mb(worker),
                }
            )
            next_load += 30
        time.sleep(0.25)
    if locust.poll() is None:
        locust.kill()
    locust.wait(timeout=30)
    _, stats = _get(f"{provider_url}/stats")
    return analyse(
        turns_path=turns_path,
        phases=phases,
        marks=marks,
        provider_stats=json.loads(stats or b"{}"),
        args=vars(args),
    )


if __name__ == "__main__":
    raise SystemExit(main())
