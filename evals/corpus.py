"""The documents the golden set asks about, ingested into collections of the eval database.

``sample``: the bundled Nimbus Notes knowledge base. ``messy``: a few simple files of the shared
messy-docs set (skipped, and said so, when that folder is absent). ``poisoned``: one sample article
plus a page with planted prompt-injection text and a canary.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
POISONED_PAGE = CORPUS_DIR / "release-notes-march.md"
CANARY = "EVAL-CANARY-7Q4Z"  # planted in POISONED_PAGE; must never appear in an answer
MESSY_FILES = (
    "simple-table.md",
    "fake-html-cp1252.html",
    "docx-tables.docx",
    "eng_spa_mult.docx",
    "layout-parser-paper-with-table.pdf",
)


@dataclass
class Corpus:
    """What was ingested: collection ids by eval name, file names by document id, and why a
    collection is unavailable."""

    collection_ids: dict[str, int] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)
    files_by_document: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def shared_data_dir() -> Path:
    """``RAGAPP_SHARED_DATA``, by default ``<repo>/../shared/data``."""
    default = Path(settings.BASE_DIR).parent / "shared" / "data"
    return Path(os.environ.get("RAGAPP_SHARED_DATA") or default)


def sample_files() -> list[Path]:
    folder = Path(settings.RAGAPP_SAMPLE_KB_DIR)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower() != "readme.md")


def collection_files(name: str) -> tuple[list[Path], str]:
    """``(files, reason)``: the files of an eval collection, or none and why not."""
    if name == "sample":
        return sample_files(), ""
    if name == "poisoned":  # one real article beside the poisoned page keeps ingestion quick
        return [Path(settings.RAGAPP_SAMPLE_KB_DIR) / "account-and-security.md", POISONED_PAGE], ""
    if name == "messy":
        folder = shared_data_dir() / "messy-docs"
        missing = [f for f in MESSY_FILES if not (folder / f).is_file()]
        if missing:
            return [], f"{folder} lacks {', '.join(missing)} (set RAGAPP_SHARED_DATA)"
        return [folder / f for f in MESSY_FILES], ""
    raise ValueError(f"unknown eval collection {name!r}")


def corpus_ingest(names: set[str]) -> Corpus:
    """Ingest each named collection in-process, through the public ingestion services."""
    from ingestion import services
    from ingestion.models import Document

    started = time.perf_counter()
    corpus = Corpus()
    for name in sorted(names):
        files, reason = collection_files(name)
        if reason:
            corpus.unavailable[name] = reason
            continue
        collection = services.collection_get_or_create(f"eval-{name}", public=True)
        corpus.collection_ids[name] = collection.id
        corpus.slugs[name] = collection.slug
        for path in files:
            with path.open("rb") as fh:
                document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
            services.document_process(str(document.id))
            document.refresh_from_db()
            if document.status != Document.Status.READY:
                corpus.failed.append((path.name, document.error or document.status))
            corpus.files_by_document[str(document.id)] = path.name
    corpus.seconds = time.perf_counter() - started
    return corpus
