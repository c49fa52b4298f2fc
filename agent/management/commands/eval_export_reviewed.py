from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from agent.models import ReviewItem
from agent.services.review import REVIEWED_FILE, eval_cases_append


class Command(BaseCommand):
    help = (
        "Write every case promoted from the review queue (stored in the database) into "
        f"<dir>/{REVIEWED_FILE}, skipping ids already there; for servers whose own copy of the "
        "file is not the repository."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="folder of the golden set (default: RAGAPP_EVAL_CASES_DIR)",
        )

    def handle(self, *args: Any, dir: Path | None, **options: Any) -> None:  # noqa: A002
        cases = list(
            ReviewItem.objects.filter(promoted_case__isnull=False)
            .order_by("id")
            .values_list("promoted_case", flat=True)
        )
        folder = dir or settings.RAGAPP_EVAL_CASES_DIR
        written = eval_cases_append(cases, folder=folder)
        self.stdout.write(
            f"{written} new of {len(cases)} reviewed cases in {folder / REVIEWED_FILE}"
        )
