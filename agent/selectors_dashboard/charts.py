"""Selector rows turned into chart series for static/ops/dashboard.js (Chart.js).

Each chart is ``{"type", "format", "labels", "datasets": [{"label", "data"}], "stacked"?}``;
``format`` (usd, percent, ms, count, chars, distance) tells the script how to print axis ticks.
"""

from __future__ import annotations

from typing import Any

Chart = dict[str, Any]


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    return [row["day"].isoformat() for row in rows]


def series(
    rows: list[dict[str, Any]],
    fields: dict[str, str],
    *,
    kind: str,
    fmt: str,
    stacked: bool = False,
) -> Chart:
    """A chart of one dataset per field (``{field: legend label}``) over the rows' days."""
    return {
        "type": kind,
        "format": fmt,
        "stacked": stacked,
        "labels": _labels(rows),
        "datasets": [
            {"label": label, "data": [row[field] for row in rows]}
            for field, label in fields.items()
        ],
    }


def per_model(rows: list[dict[str, Any]], days: list[str], *, field: str, fmt: str) -> Chart:
    """Stacked bars of ``field`` per day with one dataset per model."""
    models = sorted({row["model"] for row in rows})
    values = {(row["day"].isoformat(), row["model"]): row[field] for row in rows}
    return {
        "type": "bar",
        "format": fmt,
        "stacked": True,
        "labels": days,
        "datasets": [
            {"label": model, "data": [values.get((day, model), 0) for day in days]}
            for model in models
        ],
    }


def categories(
    rows: list[dict[str, Any]], *, label: str, fields: dict[str, str], fmt: str
) -> Chart:
    """Bars over categories (prompt versions, failure reasons ...) instead of days."""
    return {
        "type": "bar",
        "format": fmt,
        "stacked": False,
        "labels": [str(row[label]) for row in rows],
        "datasets": [
            {"label": name, "data": [row[field] for row in rows]} for field, name in fields.items()
        ],
    }


def language_windows(recent: dict[str, int], baseline: dict[str, int]) -> Chart:
    """Share of each language in the recent and the baseline window, side by side."""
    languages = sorted(
        set(recent) | set(baseline), key=lambda k: -(recent.get(k, 0) + baseline.get(k, 0))
    )
    total_r, total_b = sum(recent.values()) or 1, sum(baseline.values()) or 1
    return {
        "type": "bar",
        "format": "percent",
        "stacked": False,
        "labels": languages,
        "datasets": [
            {"label": "recent", "data": [recent.get(k, 0) / total_r for k in languages]},
            {"label": "baseline", "data": [baseline.get(k, 0) / total_b for k in languages]},
        ],
    }
