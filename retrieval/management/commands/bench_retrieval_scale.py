from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from retrieval.benchmarks.scale import corpus_build, hnsw_recall, latency_in_child, latency_measure


class Command(BaseCommand):
    help = (
        "Retrieval latency, memory and HNSW recall on synthetic corpora (10k, 100k, 300k chunks). "
        "Destroys the chunk table's contents: it only runs with a data folder of its own "
        "(make bench-retrieval-scale)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--sizes", default="10000,100000,300000")
        parser.add_argument("--queries", type=int, default=200)
        parser.add_argument("--measure-only", action="store_true", help=HIDDEN)
        parser.add_argument(
            "--output", default=str(settings.BASE_DIR / "bench/results/retrieval-scale.json")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["measure_only"]:
            # The child process: serve queries against whatever corpus is loaded; print JSON.
            self.stdout.write(json.dumps(latency_measure(queries=options["queries"])))
            return
        if not settings.EMBEDDED_DATABASE or "bench" not in settings.DATA_DIR.name:
            raise CommandError(
                "refusing to overwrite this database: set RAGAPP_DATA_DIR to a folder named "
                "like .data/bench-scale (make bench-retrieval-scale does)"
            )
        call_command("migrate", verbosity=0)
        path = Path(options["output"])
        results = json.loads(path.read_text()) if path.exists() else {}
        for n in [int(s) for s in options["sizes"].split(",")]:
            corpus = corpus_build(n)
            row = {**latency_in_child(queries=options["queries"]), **hnsw_recall(corpus)}
            row["ef_search"] = settings.RAGAPP_HNSW_EF_SEARCH
            row["ef_search_filtered"] = settings.RAGAPP_HNSW_EF_SEARCH_FILTERED
            row["load_average"] = [round(x, 2) for x in os.getloadavg()]
            results[str(n)] = row
            self.stdout.write(f"{n}: {json.dumps(row)}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        self.stdout.write(
            f"{'chunks':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10} {'RSS MB':>8}"
            f" {'filtered p50':>13} {'filtered p95':>13} {'filtered recall@10':>19}"
        )
        for n, row in sorted(results.items(), key=lambda kv: int(kv[0])):
            self.stdout.write(
                f"{n:>8} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['hnsw_recall@10']:>10}"
                f" {row['rss_mb']:>8} {row.get('filtered_p50_ms', '-'):>13}"
                f" {row.get('filtered_p95_ms', '-'):>13}"
                f" {row.get('hnsw_recall@10_filtered_90pct', '-'):>19}"
            )
        self.stdout.write(f"wrote {path}")


HIDDEN = "internal: measure latency against the loaded corpus and print JSON"
