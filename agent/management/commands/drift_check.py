"""``manage.py drift_check``: the drift check once, for cron or by hand."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from agent.services.drift import drift_check


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


class Command(BaseCommand):
    help = "Profile new questions, compare the recent window with the baseline, raise alerts."

    def handle(self, *args: Any, **options: Any) -> None:
        report = drift_check()
        self.stdout.write(
            f"window {report.key}: {report.recent.questions} recent / "
            f"{report.baseline.questions} baseline questions profiled"
        )
        for f in report.figures:
            state = "ALERT" if f.crossed else ("ok" if f.enough_data else "too few")
            self.stdout.write(
                f"{f.metric:18} {state:8} recent {_fmt(f.recent):>9} baseline "
                f"{_fmt(f.baseline):>9} change {_fmt(f.change):>9} threshold {f.threshold:g}"
            )
