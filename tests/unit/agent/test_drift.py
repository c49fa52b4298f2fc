"""The drift comparison and the language of a question (pure code, no database)."""

from __future__ import annotations

import pytest

from agent.pipeline.drift import (
    Thresholds,
    WindowStats,
    cosine_distance,
    drift_compare,
    total_variation,
)
from ingestion.pipeline.language import language_detect

THRESHOLDS = Thresholds(
    cost_per_answer_rise=0.5,
    refusal_rate_factor=2.0,
    p95_rise=0.3,
    centroid_distance=0.2,
    no_match_rise=0.15,
    language_shift=0.25,
    min_sample=10,
)


def window(**changes: object) -> WindowStats:
    values: dict[str, object] = {
        "answers": 100,
        "answered": 80,
        "refused": 10,
        "answer_cost_usd": 0.8,
        "p95_latency_ms": 1000.0,
        "questions": 100,
        "no_match": 10,
        "centroid": [1.0, 0.0],
        "languages": {"en": 90, "de": 10},
    }
    return WindowStats(**{**values, **changes})  # type: ignore[arg-type]


def crossed(recent: WindowStats, baseline: WindowStats) -> list[str]:
    return [f.metric for f in drift_compare(recent, baseline, THRESHOLDS) if f.crossed]


def test_the_same_traffic_crosses_nothing() -> None:
    assert crossed(window(), window()) == []


@pytest.mark.parametrize(
    ("changes", "metric"),
    [
        ({"answer_cost_usd": 1.2}, "cost_per_answer"),  # +50%
        ({"refused": 20}, "refusal_rate"),  # x2
        ({"p95_latency_ms": 1300.0}, "p95_latency"),  # +30%
        ({"centroid": [0.6, 0.8]}, "question_centroid"),  # cosine distance 0.4
        ({"no_match": 25}, "no_match_share"),  # 10% -> 25%
        ({"languages": {"en": 60, "fr": 40}}, "language_mix"),  # total variation 0.4
    ],
)
def test_each_metric_crosses_at_its_threshold(changes: dict[str, object], metric: str) -> None:
    assert crossed(window(**changes), window()) == [metric]


def test_just_under_the_thresholds_nothing_crosses() -> None:
    recent = window(answer_cost_usd=1.19, refused=19, p95_latency_ms=1299.0, no_match=24)
    assert crossed(recent, window()) == []


def test_a_window_smaller_than_the_minimum_sample_is_not_judged() -> None:
    figures = drift_compare(window(answers=9, refused=9), window(), THRESHOLDS)
    refusal = next(f for f in figures if f.metric == "refusal_rate")
    assert refusal.recent == 1.0 and not refusal.enough_data and not refusal.crossed


def test_refusals_from_a_zero_baseline_are_an_infinite_factor() -> None:
    figures = drift_compare(window(refused=5), window(refused=0), THRESHOLDS)
    refusal = next(f for f in figures if f.metric == "refusal_rate")
    assert refusal.change == float("inf") and refusal.crossed


def test_distances() -> None:
    assert cosine_distance([1.0, 0.0], [0.0, 2.0]) == pytest.approx(1.0)
    assert cosine_distance([1.0, 1.0], [2.0, 2.0]) == pytest.approx(0.0)
    assert total_variation({"en": 5}, {"en": 50}) == 0.0
    assert total_variation({"en": 1}, {"de": 1}) == 1.0
    assert total_variation({"en": 3, "de": 1}, {"en": 1, "de": 1}) == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("question", "language"),
    [
        ("How long is a password reset link valid?", "en"),
        ("Wie lange ist ein Link zum Zurücksetzen gültig?", "de"),
        ("Combien de temps le lien est-il valable ?", "fr"),
        ("¿Cuánto tiempo es válido el enlace?", "es"),
        ("export pdf", "und"),  # too short to tell
    ],
)
def test_the_language_of_a_question(question: str, language: str) -> None:
    assert language_detect(question) == language
