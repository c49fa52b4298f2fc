"""Fixtures for the provider layer: a small knowledge base and a chain pointed at the loopback
OpenAI-protocol server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from agent.providers.registry import chat_models
from tests.support.openai_server import FakeOpenAIServer, ok

SMALL_KB = {
    "Account and security": [
        (
            "Resetting your password",
            "Password reset links expire after 30 minutes. If your link has expired, request a "
            "new one from the sign-in page; only the most recent link works.",
        ),
        (
            "Resetting your password",
            "A new password must be at least 12 characters long. Changing your password signs "
            "you out of all other devices.",
        ),
        (
            "Two-factor authentication",
            "Two-factor authentication adds a second step to signing in: after your password, "
            "you enter a six-digit code from an authenticator app. We do not send codes by SMS.",
        ),
        (
            "Recovery codes",
            "When you turn on two-factor authentication you get 10 one-time recovery codes.",
        ),
    ],
    "Offline and sync": [
        ("Offline", "Notes you edit offline sync automatically when the device reconnects."),
        ("Plans", "The Pro plan costs $8 per month and includes unlimited devices."),
    ],
}


@pytest.fixture
def small_kb(db):  # type: ignore[no-untyped-def]
    """A few passages stored as ready documents with real embeddings: no parsing, so it takes
    milliseconds rather than the seconds ingesting files does (ingestion is tested apart)."""
    from ingestion import services
    from ingestion.models import Chunk, Document
    from retrieval.providers.registry import embedder

    emb = embedder()
    collection = services.collection_get_or_create(public=True)
    documents = []
    for n, (title, passages) in enumerate(SMALL_KB.items()):
        document = Document.objects.create(
            collection=collection,
            title=title,
            file=f"documents/small-kb-{n}.md",
            original_name=f"small-kb-{n}.md",
            content_hash=f"small-kb-{n}",
            status=Document.Status.READY,
            stage=Document.Stage.INDEXED,
        )
        vectors = emb.embed_documents([text for _, text in passages])
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                index=i,
                text=text,
                heading=heading,
                token_count=len(text) // 4,
                embedding=vector,
                embedding_model=emb.name,
            )
            for i, ((heading, text), vector) in enumerate(zip(passages, vectors, strict=True))
        )
        documents.append(document)
    return documents


def openai_entry(server: FakeOpenAIServer, model: str, **options: Any) -> dict[str, Any]:
    return {
        "KIND": "openai",
        "OPTIONS": {
            "model": model,
            "base_url": server.url,
            "timeout_s": 1.0,
            "max_attempts": 2,
            "backoff_base_s": 0.01,
            "max_backoff_s": 0.5,
            "first_token_timeout_s": 2.0,
            "idle_timeout_s": 2.0,
            **options,
        },
    }


EXTRACTIVE = {"KIND": "extractive", "OPTIONS": {}}


@pytest.fixture
def chain() -> Iterator[Callable[..., FakeOpenAIServer]]:
    """``chain(*models, routes=None, **setting_overrides)``: the fallback chain is each model on
    one loopback server, then the extractive answerer; returns the server."""
    servers: list[FakeOpenAIServer] = []
    overrides: list[Any] = []

    def make(
        *models: str,
        routes: dict[str, list[str]] | None = None,
        options: dict[str, Any] | None = None,
        extractive: bool = True,
        **setting_overrides: Any,
    ) -> FakeOpenAIServer:
        server = FakeOpenAIServer(default=ok()).start()
        servers.append(server)
        entries = [openai_entry(server, m, **(options or {})) for m in models or ("gpt-4o",)]
        route_chains = {
            route: [openai_entry(server, m, **(options or {})) for m in names] + [EXTRACTIVE]
            for route, names in (routes or {}).items()
        }
        override = override_settings(
            RAG_CHAT_MODELS=[*entries, EXTRACTIVE] if extractive else entries,
            RAG_CHAT_ROUTES=route_chains,
            OPENAI_BASE_URL=server.url,
            **setting_overrides,
        )
        override.enable()
        overrides.append(override)
        chat_models.cache_clear()
        return server

    yield make
    for override in reversed(overrides):
        override.disable()
    for server in servers:
        server.stop()
    chat_models.cache_clear()
