"""The prompt registry: immutable versions under a lock of hashes, canary buckets, and the
canary-versus-production judgement. Pure code and files only."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from agent.checks import prompt_registry
from agent.pipeline import prompt as registry
from agent.pipeline.prompt import (
    PROMPT_FOLDERS,
    PROMPTS_DIR,
    CanaryLimits,
    VersionStats,
    canary_bucket,
    canary_regressions,
    prompt_load,
    prompt_lock_problems,
    prompt_lock_read,
    prompt_lock_write,
    prompt_refs,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the real registry with its lock."""
    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, copy)
    return copy


def test_every_version_file_in_the_repository_is_released_and_unchanged():
    for folder in PROMPT_FOLDERS:
        assert prompt_refs(folder), folder
        assert prompt_lock_problems(folder) == []


def test_a_versions_content_hash_is_the_sha256_of_its_bytes_and_matches_its_release():
    lock = prompt_lock_read()
    for ref in ("grounded_answer@1", "grounded_answer@2"):
        raw = (PROMPTS_DIR / f"{ref}.toml").read_bytes()
        assert prompt_load(ref).hash == hashlib.sha256(raw).hexdigest() == lock[ref]


def test_editing_a_released_version_is_detected_and_cannot_be_released_again(folder: Path):
    path = folder / "grounded_answer@1.toml"
    path.write_text(path.read_text().replace("Answer only", "Answer mostly"))

    [problem] = prompt_lock_problems(folder)
    assert problem.startswith("grounded_answer@1 was edited after release")
    with pytest.raises(ValueError, match="edited after release"):
        prompt_lock_write(folder)


def test_the_system_check_fails_start_up_on_an_edited_released_version(folder, monkeypatch):
    path = folder / "grounded_answer@2.toml"
    path.write_bytes(path.read_bytes() + b"\n# a harmless-looking comment\n")
    monkeypatch.setattr(registry, "PROMPT_FOLDERS", (folder,))

    errors = prompt_registry(None)

    assert [e.id for e in errors] == ["agent.E010"]
    assert "grounded_answer@2 was edited after release" in errors[0].msg


def test_a_deleted_release_and_an_unreleased_file_are_both_reported(folder: Path):
    (folder / "grounded_answer@1.toml").unlink()
    shutil.copy(folder / "grounded_answer@2.toml", folder / "grounded_answer@3.toml")
    (folder / "grounded_answer@3.toml").write_text(
        (folder / "grounded_answer@3.toml").read_text().replace('version = "2"', 'version = "3"')
    )

    assert prompt_lock_problems(folder) == [
        "grounded_answer@1 is released but its file is gone",
        "grounded_answer@3 is not in lock.json: run `manage.py prompt_lock`",
    ]


def test_releasing_records_only_new_versions_and_never_changes_a_recorded_hash(folder: Path):
    before = prompt_lock_read(folder)
    text = (folder / "grounded_answer@2.toml").read_text().replace('version = "2"', 'version = "3"')
    (folder / "grounded_answer@3.toml").write_text(text)

    assert prompt_lock_write(folder) == ["grounded_answer@3"]
    after = prompt_lock_read(folder)
    assert {k: after[k] for k in before} == before
    assert prompt_lock_write(folder) == []
    assert prompt_lock_problems(folder) == []


def test_a_new_file_that_does_not_load_is_not_released(folder: Path):
    text = (folder / "grounded_answer@2.toml").read_text()
    bad = text.replace('version = "2"', 'version = "3"').replace('"answer"\n', '"essay"\n', 1)
    (folder / "grounded_answer@3.toml").write_text(bad)

    with pytest.raises(LookupError, match="unknown output_schema 'essay'"):
        prompt_lock_write(folder)
    assert "grounded_answer@3" not in prompt_lock_read(folder)


def test_a_version_declares_its_output_schema_and_model_settings_and_version_1_defaults_them():
    first, second = prompt_load("grounded_answer@1"), prompt_load("grounded_answer@2")
    assert (first.output_schema, first.temperature) == ("answer", 0.0)
    assert (second.output_schema, second.temperature) == ("answer", 0.0)
    assert first.system != second.system and first.user == second.user


def test_a_conversations_canary_bucket_is_fixed_and_the_buckets_are_spread_evenly():
    assert canary_bucket("grounded_answer", "c-1") == canary_bucket("grounded_answer", "c-1")
    buckets = [canary_bucket("grounded_answer", f"conversation-{n}") for n in range(10_000)]
    assert min(buckets) == 0 and max(buckets) == 99
    assert 0.28 < sum(b < 30 for b in buckets) / len(buckets) < 0.32


LIMITS = CanaryLimits(
    min_answers=10,
    max_refusal_delta=0.05,
    max_thumbs_down_delta=0.05,
    max_citation_failure_delta=0.05,
    max_cost_ratio=1.5,
    max_p95_ratio=1.5,
)
PRODUCTION = VersionStats(
    version="1",
    answers=100,
    refusal_rate=0.10,
    thumbs_down_rate=0.02,
    citation_failure_rate=0.05,
    cost_per_answer_usd=0.002,
    latency_p95_ms=1000.0,
)


def test_a_canary_within_every_limit_has_no_regression():
    canary = VersionStats(
        version="2",
        answers=100,
        refusal_rate=0.15,
        thumbs_down_rate=0.07,
        citation_failure_rate=0.0,
        cost_per_answer_usd=0.003,
        latency_p95_ms=1500.0,
    )
    assert canary_regressions(PRODUCTION, canary, LIMITS) == []


@pytest.mark.parametrize(
    ("metric", "value", "reason"),
    [
        ("refusal_rate", 0.16, "refusal_rate 0.160 vs 0.100"),
        ("thumbs_down_rate", 0.08, "thumbs_down_rate 0.080 vs 0.020"),
        ("citation_failure_rate", 0.11, "citation_failure_rate 0.110 vs 0.050"),
        ("cost_per_answer_usd", 0.0031, "cost_per_answer_usd 0.0031 vs 0.002"),
        ("latency_p95_ms", 1501.0, "latency_p95_ms 1501 vs 1000"),
    ],
)
def test_a_canary_worse_beyond_one_limit_is_a_regression_naming_it(metric, value, reason):
    canary = VersionStats(**{**PRODUCTION.__dict__, "version": "2", metric: value})
    [found] = canary_regressions(PRODUCTION, canary, LIMITS)
    assert found.startswith(reason)


def test_a_ratio_is_not_judged_when_production_measured_nothing():
    free = VersionStats(version="1", answers=100, cost_per_answer_usd=0.0, latency_p95_ms=None)
    canary = VersionStats(version="2", answers=100, cost_per_answer_usd=0.01, latency_p95_ms=900)
    assert canary_regressions(free, canary, LIMITS) == []
