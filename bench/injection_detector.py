"""Precision and recall of the ingest-time injection detector on the BIPIA-style set.

    .venv/bin/python -m bench.injection_detector [--split test|train] [--out FILE]

Rules were tuned, and the instruction classifier trained, on the "train" rows only; report the
"test" rows (the default). Each row's whole text is judged, once by the rules alone and once by
the rules and the classifier (as ingestion does, with the settings' classifier and embedder);
no database. The set: ../shared/data/injection-indirect/ (README there).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ragapp.settings")

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
SET = DATA / "injection-indirect" / "bipia_indirect_injection.jsonl"


def evaluate(split: str, *, classifier: bool) -> dict[str, object]:
    from ingestion.pipeline.injection import injection_reason
    from ingestion.providers.registry import instruction_reasons

    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line]
    rows = [r for r in rows if r["bipia_split"] == split]
    found = instruction_reasons([r["text"] for r in rows]) if classifier else [""] * len(rows)
    counts: Counter[str] = Counter()
    by_task: dict[str, Counter[str]] = {}
    missed: Counter[str] = Counter()
    false_alarms: list[str] = []
    for row, classified in zip(rows, found, strict=True):
        reason = injection_reason(row["text"]) or classified
        flagged = bool(reason)
        outcome = {(1, True): "tp", (1, False): "fn", (0, True): "fp", (0, False): "tn"}[
            (row["label"], flagged)
        ]
        counts[outcome] += 1
        by_task.setdefault(row["task"], Counter())[outcome] += 1
        if outcome == "fn":
            missed[row["attack_category"]] += 1
        if outcome == "fp":
            false_alarms.append(f"{row['id']}: {reason}")
    return {
        "split": split,
        "rows": len(rows),
        **_scores(counts),
        "by_task": {task: _scores(c) for task, c in sorted(by_task.items())},
        "missed_by_category": dict(missed.most_common()),
        "false_alarms": false_alarms[:20],
    }


def _scores(c: Counter[str]) -> dict[str, object]:
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
    return {
        "precision": round(precision, 3) if precision is not None else None,
        "recall": round(recall, 3) if recall is not None else None,
        "counts": dict(c),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="test", choices=["test", "train"])
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    import django

    django.setup()
    result = {
        "rules": evaluate(args.split, classifier=False),
        "rules_and_classifier": evaluate(args.split, classifier=True),
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
