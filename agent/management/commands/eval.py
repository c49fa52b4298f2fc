from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from evals import main


class Command(BaseCommand):
    help = (
        "Run the golden-set evaluation in a database of its own, print the table, write "
        "bench/results/eval.json, and fail when a score is below its threshold."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prompt", default="", help="prompt ref <id>@<version> to run")
        parser.add_argument("--compare", default="", help="two prompt refs: <a>,<b>")
        parser.add_argument("--case", action="append", default=[], help="only this case id")
        parser.add_argument("--category", action="append", default=[], help="only this category")
        parser.add_argument("--thresholds", type=Path, default=None, help="thresholds JSON file")
        parser.add_argument("--output", type=Path, default=None, help="results JSON file")
        parser.add_argument("--no-judge", action="store_true", help="skip the LLM judge")
        parser.add_argument(
            "--stop-db-server",
            action="store_true",
            help="stop the embedded PostgreSQL afterwards (its data folder is the eval's own)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            passed = main.eval_main(
                prompt=options["prompt"],
                compare=options["compare"],
                case_ids=options["case"],
                categories=options["category"],
                thresholds_path=options["thresholds"],
                output=options["output"],
                judge=not options["no_judge"],
                stop_db_server=options["stop_db_server"],
                stdout=self.stdout,
            )
        except main.EvalSetupError as exc:
            raise CommandError(str(exc)) from exc
        if not passed:
            raise CommandError("eval failed: a score is below its threshold (see above)")
