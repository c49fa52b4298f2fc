"""Uploads through the REST API, processed by a real Celery worker process."""

from __future__ import annotations

import io

import pytest
from django.conf import settings

from ingestion.models import Chunk, Document
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


def upload(client, name: str, content: bytes, **extra):  # type: ignore[no-untyped-def]
    fh = io.BytesIO(content)
    fh.name = name
    return client.post("/api/v1/documents", {"file": fh, **extra}, format="multipart")


def final_state(client, document_id: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    def poll():  # type: ignore[no-untyped-def]
        body = client.get(f"/api/v1/documents/{document_id}").json()
        return body if body["status"] in {"ready", "failed"} else None

    return wait_until(poll, timeout=120)  # type: ignore[no-any-return]


def test_an_uploaded_document_is_ingested_by_the_worker(worker, client_for, bob):
    client = client_for(bob)
    content = (settings.RAGAPP_SAMPLE_KB_DIR / "account-and-security.md").read_bytes()
    response = upload(client, "account-and-security.md", content)
    assert response.status_code == 201
    assert response.json()["status"] == "queued"
    body = final_state(client, response.json()["id"])
    assert body["status"] == "ready", body["error"]
    assert body["stage"] == "indexed" and body["error"] == ""
    chunks = Chunk.objects.filter(document_id=body["id"])
    assert chunks.count() >= 2
    assert any("30 minutes" in c.text for c in chunks)
    assert all(c.heading for c in chunks)
    assert list(chunks.values_list("index", flat=True)) == list(range(chunks.count()))


def test_identical_content_is_not_ingested_twice(worker, client_for, bob):
    client = client_for(bob)
    first = upload(client, "a.txt", b"Nimbus Notes keeps your notes in sync across devices.")
    second = upload(client, "renamed.txt", b"Nimbus Notes keeps your notes in sync across devices.")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == {
        "id": first.json()["id"],
        "status": second.json()["status"],
        "duplicate": True,
    }
    assert Document.objects.count() == 1
    assert final_state(client, first.json()["id"])["status"] == "ready"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage", "pdf"),
        ("picture.txt", PNG, "corrupt image"),
        ("old-word.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "unsupported file type"),
        ("empty.txt", b"   \n", "no extractable text"),
    ],
)
def test_a_bad_file_ends_failed_with_a_readable_reason(
    worker, client_for, bob, name, content, reason
):
    client = client_for(bob)
    body = final_state(client, upload(client, name, content).json()["id"])
    assert body["status"] == "failed"
    assert reason in body["error"].lower()
    assert "Traceback" not in body["error"]
    assert not Chunk.objects.filter(document_id=body["id"]).exists()


def test_deleting_a_document_removes_its_chunks_and_file(worker, client_for, bob):
    client = client_for(bob)
    doc_id = upload(client, "a.md", b"# Sync\n\nOffline changes sync within 60 seconds.").json()[
        "id"
    ]
    assert final_state(client, doc_id)["status"] == "ready"
    path = Document.objects.get(id=doc_id).file.path
    assert client.delete(f"/api/v1/documents/{doc_id}").status_code == 204
    assert not Chunk.objects.filter(document_id=doc_id).exists()
    assert client.get(f"/api/v1/documents/{doc_id}").status_code == 404
    import os

    assert not os.path.exists(path)
