from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from agent.pipeline.prompt import PROMPT_FOLDERS, prompt_lock_write


class Command(BaseCommand):
    help = (
        "Release new prompt versions: record the content hash of every version file not yet in "
        "its folder's lock.json (agent/prompts/, evals/prompts/). A recorded hash never changes; "
        "an edited released file fails the command."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for folder in PROMPT_FOLDERS:
            try:
                added = prompt_lock_write(folder)
            except (ValueError, LookupError, KeyError) as exc:
                raise CommandError(f"{folder}: {exc}") from exc
            for ref in added:
                self.stdout.write(f"released {ref} in {folder.name}/lock.json")
        self.stdout.write("every prompt version is released and unchanged")
