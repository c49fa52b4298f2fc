"""A zip bomb uploaded through the API fails with its reason, and the worker carries on."""

from __future__ import annotations

import pytest
from django.conf import settings

from ingestion.models import Chunk
from tests.integration.ingestion.test_worker_ingestion import final_state, upload
from tests.support.bombs import docx_bomb

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_zip_bomb_ends_failed_with_the_reason_and_the_worker_survives(
    worker, client_for, bob, tmp_path
):
    client = client_for(bob)
    inflated_mb = settings.RAGAPP_MAX_UNCOMPRESSED_MB + 20  # the worker's own (default) limit
    bomb = docx_bomb(tmp_path / "handbook.docx", inflated_mb=inflated_mb).read_bytes()
    assert len(bomb) < 5 * 1024 * 1024

    body = final_state(client, upload(client, "handbook.docx", bomb).json()["id"])

    assert body["status"] == "failed"
    assert body["error"] == (
        f"refused: archive expands beyond {settings.RAGAPP_MAX_UNCOMPRESSED_MB} MB (zip bomb?)"
    )
    assert not Chunk.objects.filter(document_id=body["id"]).exists()
    after = upload(client, "after.md", b"# Sync\n\nOffline changes sync within 60 seconds.")
    assert final_state(client, after.json()["id"])["status"] == "ready"
