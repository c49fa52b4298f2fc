from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from retrieval.benchmarks.scifact import STAGES, scifact_run


class Command(BaseCommand):
    help = (
        "SciFact retrieval benchmark: nDCG@10, Recall@10 and Recall@100 of each stage "
        "(bm25, dense, fused, reranked). Use a data folder of its own (make bench-retrieval)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--split", default="test", choices=["test", "train"])
        parser.add_argument(
            "--candidates",
            type=int,
            default=100,
            help="chunks each retriever returns (100, so Recall@100 sees 100+ documents)",
        )
        parser.add_argument(
            "--output", default=str(settings.BASE_DIR / "bench/results/retrieval-scifact.json")
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        stages = scifact_run(split=options["split"], candidates=options["candidates"])
        self.stdout.write(f"SciFact {options['split']} ({options['candidates']} candidates)")
        self.stdout.write(f"{'stage':<10} {'nDCG@10':>8} {'R@10':>8} {'R@100':>8}")
        for stage in STAGES:
            m = stages[stage]
            self.stdout.write(
                f"{stage:<10} {m['ndcg@10']:>8.4f} {m['recall@10']:>8.4f} {m['recall@100']:>8.4f}"
            )
        result = {
            "stages": stages,
            "split": options["split"],
            "candidates": options["candidates"],
            "settings": {
                name: getattr(settings, name)
                for name in dir(settings)
                if name.startswith(("RAGAPP_BM25", "RAGAPP_RERANK", "RAGAPP_RRF", "RAGAPP_FUSION"))
                or name in {"RAGAPP_HNSW_EF_SEARCH", "RAGAPP_CHUNK_TOKENS", "RAGAPP_CHUNK_OVERLAP"}
            },
            "load_average": os.getloadavg(),
        }
        path = Path(options["output"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
        self.stdout.write(f"wrote {path}")
