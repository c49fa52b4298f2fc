from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from ingestion import services


class Command(BaseCommand):
    help = (
        "Queue the bundled sample knowledge base for ingestion (unchanged files are skipped) in"
        " the default collection, marked public so every signed-in user can ask it."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        collection = services.collection_get_or_create(public=True)
        folder = settings.RAGAPP_SAMPLE_KB_DIR
        for path in sorted(folder.iterdir()):
            if path.name.lower() == "readme.md" or not path.is_file():
                continue
            with path.open("rb") as fh:
                document, created = services.document_create(
                    fh=fh, name=path.name, collection=collection
                )
            state = "queued" if created else f"already stored ({document.status})"
            self.stdout.write(f"{path.name}: {state}")
