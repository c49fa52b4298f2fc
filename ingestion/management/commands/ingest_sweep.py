"""Re-queue stuck documents once (workers also do this on a timer; see ingestion/tasks.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ingestion import services


class Command(BaseCommand):
    help = "Re-queue documents stuck in queued/processing; fail those past the delivery cap."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stale-after", type=float, default=None, help="seconds")

    def handle(self, *args: Any, stale_after: float | None, **options: Any) -> None:
        result = services.document_sweep(stale_after_s=stale_after)
        self.stdout.write(f"requeued {len(result.requeued)}, failed {len(result.failed)}")
