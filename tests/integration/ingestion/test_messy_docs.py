"""Acceptance: every file of the shared messy-docs corpus ends ready or failed with a specific
reason, and what is ready carries the content that makes each file tricky.

The pipeline runs in-process on the real database; the embedder is a deterministic stand-in
(a Protocol boundary) that counts tokens with the real tokenizer, so chunking is the product's
and the test stays within a few minutes. `make bench-ingest` runs the real embedder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from ingestion import services
from ingestion.models import Chunk, Document

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("RAGAPP_SHARED_DATA", REPO.parent / "shared" / "data"))
MESSY_DOCS = SHARED_DATA / "messy-docs"

FAILED = {
    "password.pdf": "encrypted",
    "password_protected.xlsx": "encrypted",
    "fake-encrypted.eml": "encrypted",
    "fake-text-all-whitespace.txt": "no extractable text",
}
# Text each ready document must contain somewhere in its chunks.
CONTAINS = {
    "rotated-page-90.pdf": "Hello World Test Text",
    "loremipsum-flat.pdf": "Lorem ipsum",  # OCR
    # Image-only tables: OCR plus table structure (img2table), one Markdown row per table row.
    "single_table.pdf": "| Base 256 | 32,051 | 400.64 (242.04) | N/A |",
    "table-multi-row-column-cells.pdf": "| Dexterity | 5 | 4 | 1 | 98.3%, n=4 | 1672.1 sec, n=4 |",
    "korean-text-with-tables.pdf": "빅포인트",
    "fr_olap.pdf": "requêtes",
    "simple-table.md": "| Item | Price | # In stock |",
    "umlauts-non-utf8.md": "können",
    "fake-html-cp1252.html": "€",
    "email-no-utf8-2008-07-16.062410.eml": "ש",  # Hebrew, from windows-1255
    "fake-email-utf-16-be.eml": "Robinson",
    "grid_offset_error.docx": "| C | Merged B1-B3 |",
    "docx-hdrftr.docx": "Main document",
    "fake-power-point-table.pptx": "| ",
    "2023-half-year-analyses-by-segment.xlsx": "| ",
    "UDHR_first_article_all.txt": "Всички хора",
    "copy-protected.pdf": "LayoutParser",
    "example-steelJIS-datasheet-utf-16.html": "SteelJIS",
}
NOT_CONTAINS = {"example-with-scripts.html": "function(", "email-with-image.eml": "iVBORw0KGgo"}


class StandInEmbedder:
    """Vectors from a hash of the text; tokens counted by the real model's tokenizer."""

    dim = 384

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        from retrieval.providers.sentence_transformers import packaged_model_path

        self._tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()))
        self.name = "stand-in@test"

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(vector / np.linalg.norm(vector))
        return np.array(rows, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


@pytest.mark.skipif(not MESSY_DOCS.is_dir(), reason=f"shared corpus not found at {MESSY_DOCS}")
def test_every_messy_document_ends_ready_or_failed_with_a_specific_reason(monkeypatch):
    from retrieval.providers import registry

    stand_in = StandInEmbedder()
    monkeypatch.setattr(registry, "embedder", lambda: stand_in)
    collection = services.collection_get_or_create("messy")
    files = sorted(p for p in MESSY_DOCS.iterdir() if p.name != "README.md")
    assert len(files) == 46
    for path in files:
        with path.open("rb") as fh:
            document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
        services.document_process(str(document.id))
    # Attachments became child documents: ingest them too (a worker would, from the queue).
    for child in Document.objects.filter(parent__isnull=False, status="queued"):
        services.document_process(str(child.id))

    outcomes = {d.original_name: d for d in Document.objects.filter(parent__isnull=True)}
    assert len(outcomes) == 46
    for name, document in outcomes.items():
        text = "\n".join(Chunk.objects.filter(document=document).values_list("text", flat=True))
        if name in FAILED:
            assert (document.status, document.error) == ("failed", FAILED[name]), name
            assert text == ""
            continue
        assert (document.status, document.error) == ("ready", ""), (name, document.error)
        assert document.stage == "indexed" and set(document.stage_seconds) >= {"parse", "embed"}
        assert text.strip(), name
        assert CONTAINS.get(name, "") in text, name
        assert name not in NOT_CONTAINS or NOT_CONTAINS[name] not in text, name

    children = Document.objects.filter(parent__isnull=False)
    assert {c.parent.original_name for c in children} >= {
        "fake-email-attachment.msg",
        "email-with-image.eml",
    }
    assert all(c.is_final and (c.status == "ready" or c.error) for c in children)
    assert not Document.objects.exclude(status__in=["ready", "failed"]).exists()
