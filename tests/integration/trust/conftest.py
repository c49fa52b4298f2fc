"""Two tenants, each a collection with one canary document ingested through the real services:
``acme`` (alice by a user grant, carol through the "acme support" group) and ``globex``
(mallory by a user grant). bob, an admin, reads both."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tenancy"

# Words only each tenant's document contains: none may ever reach the other tenant.
MARKERS = {
    "acme": ["ACMECANARY7F3A", "heliotrope", "quasar", "Tuscaloosa", "9 business days", "Acme"],
    "globex": ["GLOBEXCANARYC21E", "marigold", "nebula", "Reykjavik", "3 calendar days", "Globex"],
}


@dataclass
class Tenants:
    acme: object
    globex: object
    acme_doc: object
    globex_doc: object


def ingest(collection, path: Path):  # type: ignore[no-untyped-def]
    from ingestion import services
    from ingestion.models import Document

    with path.open("rb") as fh:
        document, _ = services.document_create(fh=fh, name=path.name, collection=collection)
    services.document_process(str(document.id))
    document = Document.objects.get(id=document.id)
    assert document.status == Document.Status.READY, document.error
    return document


@pytest.fixture
def tenants(db, alice, carol, mallory):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import Group

    from ingestion import services

    acme = services.collection_get_or_create("acme")
    globex = services.collection_get_or_create("globex")
    acme.users.add(alice)
    support = Group.objects.create(name="acme support")
    carol.groups.add(support)
    acme.groups.add(support)
    globex.users.add(mallory)
    return Tenants(
        acme=acme,
        globex=globex,
        acme_doc=ingest(acme, FIXTURES / "acme-handbook.md"),
        globex_doc=ingest(globex, FIXTURES / "globex-handbook.md"),
    )


def leaked(text: str, tenant: str) -> list[str]:
    """The markers of ``tenant`` found in ``text``."""
    return [m for m in MARKERS[tenant] if m.casefold() in text.casefold()]


@pytest.fixture(autouse=True)
def fresh_rate_counts(db):  # type: ignore[no-untyped-def]
    """Rate-limit counters live in the shared cache, which no test transaction resets."""
    from django.core.cache import cache

    cache.clear()
