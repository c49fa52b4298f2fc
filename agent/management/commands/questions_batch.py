"""``manage.py questions_batch questions.jsonl --user alice``: answer a file of questions through
the batch lane (agent/services/batch.py), storing each as a conversation of that user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agent.services.batch import questions_batch, questions_read
from ragapp.errors import AppError


class Command(BaseCommand):
    help = "Answer a JSONL file of questions through the provider's batch endpoint."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='JSONL: one {"question": ..., "collection"?: ...} a line')
        parser.add_argument("--user", required=True, help="username the answers are stored for")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r}")
        try:
            with open(options["file"], encoding="utf-8") as fh:
                rows = questions_read(fh)
            outcomes = questions_batch(user=user, rows=rows)
        except (OSError, AppError) as exc:  # a command boundary: say what went wrong
            raise CommandError(str(exc)) from exc
        for row, outcome in zip(rows, outcomes, strict=True):
            message = outcome.message
            lane = "cache" if message.cache else message.model or "-"
            self.stdout.write(f"{message.decision:9} {lane:12} {row['question'][:70]}")
        cost = sum(o.usage.get("cost_usd", 0.0) for o in outcomes)
        self.stdout.write(f"{len(outcomes)} questions answered; cost ${cost:.6f}")
