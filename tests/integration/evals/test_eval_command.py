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


def test_a_prompt_broken_on_purpose_fails_the_eval_while_its_predecessor_passes(
    tmp_path, transactional_db, openai_server, settings, monkeypatch
):
    """A new version whose user template lost the passages: the model (the loopback server,
    which answers from the passages it is shown) has nothing to cite and refuses."""
    import shutil
    from io import StringIO

    from agent.pipeline import prompt as registry
    from agent.providers.registry import chat_models
    from tests.integration.agent.conftest import openai_entry

    folder = tmp_path / "prompts"
    shutil.copytree(registry.PROMPTS_DIR, folder)
    broken = (folder / "grounded_answer@2.toml").read_text()
    broken = broken.replace('version = "2"', 'version = "9"').replace("{passages}", "(none)")
    (folder / "grounded_answer@9.toml").write_text(broken)
    monkeypatch.setattr(registry, "PROMPTS_DIR", folder)
    registry.prompt_load.cache_clear()
    settings.RAG_CHAT_MODELS = [openai_entry(openai_server, "gpt-4o")]
    settings.OPENAI_BASE_URL = openai_server.url
    chat_models.cache_clear()
    output = tmp_path / "eval.json"
    gate = ["--case", "ans-reset-link-expiry", "--no-judge", "--output", str(output)]
    gate += ["--thresholds", str(thresholds(tmp_path, assertion=1.0))]
    try:
        call_command("eval", *gate, "--prompt", "grounded_answer@2", stdout=StringIO())
        assert json.loads(output.read_text())["passed"]

        with pytest.raises(CommandError, match="below its threshold"):
            call_command("eval", *gate, "--prompt", "grounded_answer@9", stdout=StringIO())
    finally:
        registry.prompt_load.cache_clear()
        chat_models.cache_clear()
    data = json.loads(output.read_text())
    assert data["prompt"] == "grounded_answer@9"
    assert data["below_threshold"] == ["assertion pass rate 0.000 is below the threshold 1.000"]
