"""The BM25 index follows the database when documents are added or deleted, in this process and
in another one (each process keeps its own index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from django.db import connection

from ingestion.models import Chunk, Collection, Document
from retrieval.selectors import chunk_lexical_search

pytestmark = pytest.mark.integration
MODEL = "test-lexical"
CHILD = Path(__file__).with_name("lexical_child.py")
REPO = Path(__file__).resolve().parents[3]


def _document(collection: Collection, name: str, texts: list[str]) -> Document:
    document = Document.objects.create(
        collection=collection, title=name, original_name=f"{name}.txt",
        content_hash=name.ljust(64, "0"), status=Document.Status.READY,
    )  # fmt: skip
    Chunk.objects.bulk_create(
        Chunk(document=document, index=i, text=t, embedding=np.ones(384) / np.sqrt(384),
              embedding_model=MODEL)
        for i, t in enumerate(texts)
    )  # fmt: skip
    return document


def _ids(document: Document) -> set[int]:
    return set(document.chunks.values_list("id", flat=True))


def _found(query: str) -> set[int]:
    return {
        cid for cid, _ in chunk_lexical_search(query, model=MODEL, collection_ids=None, limit=10)
    }


@pytest.fixture
def collection(transactional_db):  # type: ignore[no-untyped-def]
    collection = Collection.objects.create(slug="kb", name="KB")
    _document(collection, "base", ["Invoices are emailed monthly.", "Support is open on weekdays."])
    return collection


def test_an_added_document_is_found_by_the_next_search(collection):
    assert _found("quarantine procedures") == set()
    added = _document(collection, "new", ["Quarantine procedures for incoming hardware."])
    assert _found("quarantine procedures") == _ids(added)


def test_a_deleted_document_is_no_longer_found(collection):
    doomed = _document(collection, "doomed", ["Legacy fax gateway settings."])
    assert _found("fax gateway") == _ids(doomed)
    doomed.delete()
    assert _found("fax gateway") == set()


def test_another_process_sees_additions_and_deletions(collection):
    db = connection.settings_dict
    host, port, auth = str(db["HOST"]), db["PORT"] or 5432, f"{db['USER']}:{db['PASSWORD'] or ''}"
    url = (
        f"postgresql://{auth}@/{db['NAME']}?host={host}"
        if host.startswith("/")  # the embedded server's Unix socket folder
        else f"postgresql://{auth}@{host}:{port}/{db['NAME']}"
    )
    child = subprocess.Popen(
        [sys.executable, str(CHILD), MODEL],
        # PYTHONPATH: this checkout's code, whatever the virtualenv's editable install points at.
        env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(REPO)},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip

    def ask(query: str) -> set[int]:
        assert child.stdin and child.stdout
        child.stdin.write(query + "\n")
        child.stdin.flush()
        return set(json.loads(child.stdout.readline()))

    try:
        assert child.stdout and child.stdout.readline().strip() == "ready"
        assert ask("invoices emailed") == {Chunk.objects.get(text__startswith="Invoices").id}
        assert ask("telescope calibration") == set()  # the child has built its index by now

        added = _document(collection, "telescope", ["Telescope calibration happens nightly."])
        assert ask("telescope calibration") == _ids(added)

        added.delete()
        assert ask("telescope calibration") == set()
    finally:
        child.kill()
        child.wait(timeout=10)
