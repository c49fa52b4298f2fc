from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from agent.services.prompts import prompt_canary_check


class Command(BaseCommand):
    help = (
        "Compare the canary prompt version with production and roll the canary back (with an "
        "alert) when it is worse beyond the RAGAPP_CANARY_* limits; for cron, like the "
        "agent.prompt_canary_check task."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prompt-id", default="", help="default: RAGAPP_PROMPT's id")

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = prompt_canary_check(prompt_id=options["prompt_id"])
        comparison = verdict.comparison
        if comparison is not None and comparison.canary is not None:
            for stats in (comparison.production, comparison.canary):
                self.stdout.write(
                    f"@{stats.version}: {stats.answers} answers, refusals "
                    f"{stats.refusal_rate:.3f}, thumbs down {stats.thumbs_down_rate:.3f}, "
                    f"citation failures {stats.citation_failure_rate:.3f}, cost/answer "
                    f"${stats.cost_per_answer_usd:.5f}, p95 {stats.latency_p95_ms or 0:.0f} ms"
                )
        self.stdout.write(f"{verdict.prompt_id}: {verdict.status}")
        for reason in verdict.reasons:
            self.stdout.write(f"  {reason}")
