"""The eval entry point behind ``manage.py eval`` and ``make eval``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.db import connections

from evals.cases import GoldenSetError, golden_set_load
from evals.database import eval_database
from evals.report import (
    THRESHOLDS_PATH,
    comparison_render,
    failures_render,
    header_render,
    run_json,
    scores_compute,
    table_render,
    thresholds_check,
    thresholds_load,
)
from evals.runner import SuiteRun, eval_transaction, suite_run

logger = logging.getLogger(__name__)

RESULTS_PATH = Path(settings.BASE_DIR) / "bench" / "results" / "eval.json"
COMPARE_RESULTS_PATH = RESULTS_PATH.with_name("eval-compare.json")


class EvalSetupError(Exception):
    """The run cannot start: an unknown prompt or case, a malformed golden set or thresholds."""


def prompt_refs_resolve(prompt: str, compare: str) -> list[str]:
    """The prompt versions to run, each checked to load: one, or two for a comparison."""
    from agent.pipeline.prompt import prompt_load

    if prompt and compare:
        raise EvalSetupError("use either --prompt or --compare, not both")
    refs = (
        [r.strip() for r in compare.split(",")] if compare else [prompt or settings.RAGAPP_PROMPT]
    )
    if compare and (len(refs) != 2 or not all(refs)):
        raise EvalSetupError("--compare takes two prompt refs: <id>@<version>,<id>@<version>")
    for ref in refs:
        try:
            prompt_load(ref)
        except (LookupError, KeyError, ValueError) as exc:
            raise EvalSetupError(f"cannot load prompt {ref!r}: {exc}") from exc
    return refs


def eval_main(
    *,
    prompt: str = "",
    compare: str = "",
    case_ids: list[str] | None = None,
    categories: list[str] | None = None,
    thresholds_path: Path | None = None,
    output: Path | None = None,
    judge: bool = True,
    stop_db_server: bool = False,
    stdout: TextIO,
) -> bool:
    """Run the suite in its own database, report it, and say whether every threshold held."""
    started = time.perf_counter()
    refs = prompt_refs_resolve(prompt, compare)
    try:
        golden = golden_set_load().select(ids=case_ids or None, categories=categories or None)
        thresholds = thresholds_load(thresholds_path or THRESHOLDS_PATH)
    except (GoldenSetError, ValueError, OSError) as exc:
        raise EvalSetupError(str(exc)) from exc
    if not golden.cases:
        raise EvalSetupError("no case matches the selection")
    judge_model = None
    if judge:
        from evals.judge import judge_model_from_settings

        judge_model = judge_model_from_settings()
    try:
        with eval_database(), eval_transaction():
            runs = suite_run(golden, prompt_refs=refs, judge=judge_model)
    finally:
        if stop_db_server and settings.EMBEDDED_DATABASE:
            from ragapp import embedded_db

            connections.close_all()
            embedded_db.stop(settings.EMBEDDED_PGDATA)
    passed = all(_report(run, thresholds, stdout) for run in runs)
    if len(runs) == 2:
        stdout.write(comparison_render(*runs) + "\n")
    _write(runs, thresholds, output)
    stdout.write(f"eval took {time.perf_counter() - started:.0f}s\n")
    return passed


def _report(run: SuiteRun, thresholds: dict[str, float], stdout: TextIO) -> bool:
    scores = scores_compute(run)
    below = thresholds_check(scores, thresholds)
    stdout.write(f"\n{header_render(run)}\n\n{table_render(run, scores, thresholds)}\n\n")
    stdout.write(failures_render(run) + "\n")
    for line in below:
        stdout.write(f"BELOW THRESHOLD: {line}\n")
    if not below:
        stdout.write("all thresholds met\n")
    return not below


def _write(runs: list[SuiteRun], thresholds: dict[str, float], output: Path | None) -> None:
    if len(runs) == 1:
        data = run_json(runs[0], thresholds)
        path = output or RESULTS_PATH
    else:
        data = {"compare": [run_json(run, thresholds) for run in runs]}
        path = output or COMPARE_RESULTS_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
