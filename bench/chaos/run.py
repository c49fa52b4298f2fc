"""``make bench-chaos``: ingest documents while the worker is SIGKILLed, the broker (a private
Redis) restarted and the embedded PostgreSQL restarted; write ``bench/results/chaos.json``.

    .venv/bin/python -m bench.chaos.run --documents 200 --kills 20 --broker-restarts 3 \
        --db-restarts 1 --out bench/results/chaos.json

Everything is on loopback and private to this run: its own data folder (wiped first), its own
``redis-server`` (port 6390 by default, no persistence), its own worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--broker-restarts", type=int, default=3)
    parser.add_argument("--db-restarts", type=int, default=1)
    parser.add_argument("--window", type=float, default=0.0, help="seconds; 0: from --documents")
    parser.add_argument("--settle", type=float, default=400.0)
    parser.add_argument("--no-poison", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=1, help="worker pool processes")
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--visibility-timeout", type=int, default=30)
    # The sweeper re-queues a document with no progress for this long (production default 600 s;
    # a step here takes at most ~30 s) and runs this often in every worker.
    parser.add_argument("--stale-s", type=int, default=90)
    parser.add_argument("--sweep-every-s", type=int, default=10)
    parser.add_argument("--data-dir", default=str(REPO / ".data" / "bench-chaos"))
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "chaos.json"))
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir).resolve()
    shutil.rmtree(data_dir, ignore_errors=True)  # our own folder: every run starts empty
    data_dir.mkdir(parents=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    sys.path.insert(0, str(REPO))
    from bench.load.stack import (
        PrivateRedis,
        celery_beat,
        celery_worker,
        load_average,
        stop_on_signals,
    )

    stop_on_signals()

    redis = PrivateRedis(args.redis_port, data_dir / "redis.log").start()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "ragapp.settings",
            "RAGAPP_DATA_DIR": str(data_dir),
            "CELERY_BROKER_URL": redis.url,
            # Redis redelivers an unacknowledged task after this many seconds (default 7200).
            "CELERY_VISIBILITY_TIMEOUT": str(args.visibility_timeout),
            "RAGAPP_INGEST_STALE_S": str(args.stale_s),
            "RAGAPP_INGEST_SWEEP_EVERY_S": str(args.sweep_every_s),
        }
    )
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from bench.chaos.monkey import ChaosPlan, ChaosRun
    from bench.load.stack import process_env
    from ragapp import embedded_db
    from ragapp.celery import app

    call_command("migrate", interactive=False, verbosity=0)
    env = process_env()
    worker = celery_worker(env, data_dir / "worker.log", concurrency=args.concurrency).start()
    beat = None
    if app.conf.beat_schedule:  # periodic sweeps, when the code defines any
        beat = celery_beat(env, data_dir / "beat.log", data_dir / "beat-schedule").start()
    # A restarted worker needs ~20-25 s here before it finishes a task (lazy imports of the
    # parsers and the model in the pool process, on a busy machine): kills
    # closer than that would only ever hit a warming-up worker and nothing would progress.
    window = args.window or max(60.0, args.documents * 1.5, args.kills * 30.0)
    plan = ChaosPlan(
        documents=args.documents,
        kills=args.kills,
        broker_restarts=args.broker_restarts,
        db_restarts=args.db_restarts,
        window_s=window,
        upload_window_s=window * 0.7,
        poison=not args.no_poison,
        settle_s=args.settle,
        seed=args.seed,
    )
    load_before = load_average()
    started = time.time()
    try:
        result = ChaosRun(plan, worker=worker, redis=redis, pgdata=settings.EMBEDDED_PGDATA).run()
    finally:
        worker.stop()
        if beat is not None:
            beat.stop()
        redis.stop()
    result.update(
        {
            "broker": "redis (private, no persistence)",
            "visibility_timeout_s": args.visibility_timeout,
            "ingest_stale_s": args.stale_s,
            "ingest_sweep_every_s": args.sweep_every_s,
            "ingest_max_attempts": settings.RAGAPP_INGEST_MAX_ATTEMPTS,
            "beat": beat is not None,
            "worker": f"prefork --concurrency={args.concurrency} (make run: 1)",
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        }
    )
    embedded_db.stop(settings.EMBEDDED_PGDATA)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    summary = {k: result[k] for k in ("documents", "lost", "duplicate_chunks", "kills")}
    summary |= {k: result[k] for k in ("broker_restarts", "db_restarts", "statuses")}
    summary["poison"] = result["poison"] and {
        k: result["poison"][k] for k in ("status", "attempts", "error", "contained")
    }
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out}")
    return 0 if result["lost"] == 0 and result["duplicate_chunks"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
