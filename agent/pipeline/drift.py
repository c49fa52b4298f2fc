"""Drift: compare the figures of a recent window of traffic with a baseline window.

Pure code over dataclasses: the selectors measure the two windows, this module says which
metrics moved past their thresholds, and the drift service turns that into alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class WindowStats:
    """What one window of traffic looked like."""

    answers: int  # assistant messages
    answered: int
    refused: int
    answer_cost_usd: float  # provider calls made for answers
    p95_latency_ms: float | None
    questions: int  # profiled questions (embedding, best match, language)
    no_match: int  # questions whose nearest chunk is below the no-match similarity
    centroid: list[float] | None = None  # mean question embedding
    languages: dict[str, int] = field(default_factory=dict)

    @property
    def cost_per_answer(self) -> float | None:
        return self.answer_cost_usd / self.answered if self.answered else None

    @property
    def refusal_rate(self) -> float | None:
        return self.refused / self.answers if self.answers else None

    @property
    def no_match_share(self) -> float | None:
        return self.no_match / self.questions if self.questions else None


@dataclass(frozen=True)
class Thresholds:
    cost_per_answer_rise: float  # relative, 0.5 = +50%
    refusal_rate_factor: float  # 2.0 = twice the baseline rate
    p95_rise: float  # relative
    centroid_distance: float  # cosine distance between the two centroids
    no_match_rise: float  # absolute rise of the share
    language_shift: float  # total variation distance of the language mix
    min_sample: int


@dataclass(frozen=True)
class DriftFigure:
    """One metric in both windows; ``crossed`` only when both samples are large enough."""

    metric: str
    recent: float | None
    baseline: float | None
    change: float | None  # what the threshold is compared with
    threshold: float
    enough_data: bool
    crossed: bool
    message: str


def cosine_distance(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return 1.0 - float(va @ vb) / norm if norm else 0.0


def total_variation(a: dict[str, int], b: dict[str, int]) -> float:
    """Half the L1 distance between two count distributions: 0 same mix, 1 disjoint."""
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0) / ta - b.get(k, 0) / tb) for k in set(a) | set(b))


def _relative(recent: float | None, baseline: float | None) -> float | None:
    if recent is None or baseline is None:
        return None
    if baseline == 0:
        return 0.0 if recent == 0 else float("inf")
    return recent / baseline - 1.0


def _figure(
    metric: str,
    recent: float | None,
    baseline: float | None,
    change: float | None,
    threshold: float,
    enough: bool,
    describe: str,
) -> DriftFigure:
    crossed = enough and change is not None and change >= threshold
    return DriftFigure(
        metric=metric,
        recent=recent,
        baseline=baseline,
        change=change,
        threshold=threshold,
        enough_data=enough,
        crossed=crossed,
        message=describe,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def drift_compare(recent: WindowStats, baseline: WindowStats, t: Thresholds) -> list[DriftFigure]:
    """Each drift metric of ``recent`` against ``baseline``, in a fixed order."""
    answers_ok = min(recent.answers, baseline.answers) >= t.min_sample
    answered_ok = min(recent.answered, baseline.answered) >= t.min_sample
    questions_ok = min(recent.questions, baseline.questions) >= t.min_sample
    cost = _relative(recent.cost_per_answer, baseline.cost_per_answer)
    p95 = _relative(recent.p95_latency_ms, baseline.p95_latency_ms)
    refusal_factor = None
    if recent.refusal_rate is not None and baseline.refusal_rate is not None:
        refusal_factor = (
            recent.refusal_rate / baseline.refusal_rate
            if baseline.refusal_rate
            else (float("inf") if recent.refusal_rate else 0.0)
        )
    centroid = (
        cosine_distance(recent.centroid, baseline.centroid)
        if recent.centroid is not None and baseline.centroid is not None
        else None
    )
    no_match = (
        recent.no_match_share - baseline.no_match_share
        if recent.no_match_share is not None and baseline.no_match_share is not None
        else None
    )
    languages = total_variation(recent.languages, baseline.languages)
    return [
        _figure(
            "cost_per_answer",
            recent.cost_per_answer,
            baseline.cost_per_answer,
            cost,
            t.cost_per_answer_rise,
            answered_ok,
            f"cost per answered question ${_fmt(recent.cost_per_answer, '.5f')} vs "
            f"${_fmt(baseline.cost_per_answer, '.5f')} (change {_fmt(cost, '+.0%')})",
        ),
        _figure(
            "refusal_rate",
            recent.refusal_rate,
            baseline.refusal_rate,
            refusal_factor,
            t.refusal_rate_factor,
            answers_ok,
            f"refusal rate {_fmt(recent.refusal_rate, '.1%')} vs "
            f"{_fmt(baseline.refusal_rate, '.1%')} (x{_fmt(refusal_factor, '.2f')})",
        ),
        _figure(
            "p95_latency",
            recent.p95_latency_ms,
            baseline.p95_latency_ms,
            p95,
            t.p95_rise,
            answers_ok,
            f"p95 answer latency {_fmt(recent.p95_latency_ms, '.0f')} ms vs "
            f"{_fmt(baseline.p95_latency_ms, '.0f')} ms (change {_fmt(p95, '+.0%')})",
        ),
        _figure(
            "question_centroid",
            centroid,
            0.0 if centroid is not None else None,
            centroid,
            t.centroid_distance,
            questions_ok,
            f"question-embedding centroid moved by cosine distance {_fmt(centroid, '.3f')}",
        ),
        _figure(
            "no_match_share",
            recent.no_match_share,
            baseline.no_match_share,
            no_match,
            t.no_match_rise,
            questions_ok,
            f"questions with no good document match {_fmt(recent.no_match_share, '.1%')} vs "
            f"{_fmt(baseline.no_match_share, '.1%')}",
        ),
        _figure(
            "language_mix",
            languages,
            0.0,
            languages,
            t.language_shift,
            questions_ok,
            f"language mix shifted by {languages:.2f} (total variation)",
        ),
    ]
