"""The eval command end to end, on a tiny subset so it stays quick: its own database, the table,
eval.json, and a non-zero exit when a score is below its threshold (what CI relies on)."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SUBSET = ["--case", "ans-reset-link-expiry", "--case", "unans-mercury", "--case", "inj-dan"]


def thresholds(tmp_path, **minimums: float):  # type: ignore[no-untyped-def]
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"min_pass_rate": minimums}), encoding="utf-8")
    return path


def run_eval(tmp_path, *args: str):  # type: ignore[no-untyped-def]
    from io import StringIO

    out = StringIO()
    output = tmp_path / "eval.json"
    try:
        call_command("eval", *SUBSET, "--no-judge", "--output", str(output), *args, stdout=out)
    finally:
        out.seek(0)
    return out.getvalue(), output


def test_a_passing_run_prints_the_table_writes_scores_and_leaves_app_data_alone(
    tmp_path, transactional_db
):
    from django.contrib.auth import get_user_model

    from ingestion.models import Document

    app_database = connection.settings_dict["NAME"]
    text, output = run_eval(tmp_path, "--thresholds", str(thresholds(tmp_path, assertion=0.5)))

    assert "assertion" in text and "retrieval" in text and "all thresholds met" in text
    assert "the extractive default ignores the prompt text" in text
    data = json.loads(output.read_text())
    assert data["passed"] and data["prompt"] == "grounded_answer@1"
    assert data["thresholds"] == {"assertion": 0.5}
    assert set(data["scores"]) >= {"assertion", "reference", "retrieval"}
    assert data["scores"]["retrieval"]["pass_rate"] == 1.0
    assert data["golden_set"]["answerable"] >= 1
    # The run used a database of its own, dropped afterwards; the app's is untouched.
    assert connection.settings_dict["NAME"] == app_database
    assert not Document.objects.exists()
    assert not get_user_model().objects.filter(username="eval-runner").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'ragapp_eval'")
        assert cursor.fetchone() is None


def test_a_score_below_its_threshold_fails_the_command_and_names_the_grader(
    tmp_path, transactional_db
):
    with pytest.raises(CommandError, match="below its threshold"):
        run_eval(tmp_path, "--thresholds", str(thresholds(tmp_path, reference=1.01)))
    data = json.loads((tmp_path / "eval.json").read_text())
    assert not data["passed"]
    assert data["below_threshold"] == ["reference pass rate 1.000 is below the threshold 1.010"]


def test_an_unknown_prompt_version_is_refused_before_anything_runs(tmp_path, transactional_db):
    with pytest.raises(CommandError, match="cannot load prompt 'grounded_answer@999'"):
        run_eval(tmp_path, "--prompt", "grounded_answer@999")
    assert not (tmp_path / "eval.json").exists()


def test_comparing_two_prompt_versions_prints_the_per_case_diff(tmp_path, transactional_db):
    from io import StringIO

    out = StringIO()
    output = tmp_path / "compare.json"
    call_command(
        "eval",
        "--case",
        "ans-pro-price",
        "--no-judge",
        "--compare",
        "grounded_answer@1,grounded_answer@1",
        "--output",
        str(output),
        stdout=out,
    )
    assert "no case differs between grounded_answer@1 and grounded_answer@1" in out.getvalue()
    data = json.loads(output.read_text())
    assert [run["prompt"] for run in data["compare"]] == ["grounded_answer@1"] * 2
