"""Answer caches: exact (normalised question) and semantic (embedding similarity).

Both are keyed by the collections searched, the document-index version and the prompt version, so
a document added, re-ingested or deleted changes the version and old entries stop matching (and
are purged on the next store). A follow-up turn's key includes a digest of its conversation, and
the semantic cache serves first turns only: a follow-up never reuses an answer made without its
context. Only answered (not escalated or refused) questions are stored.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Count, F, Max
from django.utils import timezone
from pgvector.django import CosineDistance

from agent.models import AnswerCache
from agent.providers.protocols import Turn
from ingestion.models import Document

logger = logging.getLogger(__name__)

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class CacheKey:
    question: str  # normalised
    scope: str
    index_version: str
    prompt_version: str
    context: str  # "" for a first turn

    @property
    def digest(self) -> str:
        raw = "\x1f".join(
            (self.question, self.scope, self.index_version, self.prompt_version, self.context)
        )
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class CacheHit:
    kind: str  # "exact" | "semantic"
    payload: dict[str, Any]
    similarity: float = 1.0


def question_normalise(question: str) -> str:
    text = unicodedata.normalize("NFKC", question).casefold()
    return _SPACE.sub(" ", text).strip().rstrip("?!. ")


def index_version(collection_ids: list[int] | None) -> str:
    """Changes whenever a ready document of the scope is added, re-processed or deleted."""
    qs = Document.objects.filter(status=Document.Status.READY)
    if collection_ids is not None:
        qs = qs.filter(collection_id__in=collection_ids)
    row = qs.aggregate(n=Count("id"), last=Max("updated_at"), finished=Max("finished_at"))
    raw = f"{row['n']}|{row['last']}|{row['finished']}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def cache_key(
    *, question: str, collection_ids: list[int] | None, prompt_ref: str, history: list[Turn]
) -> CacheKey:
    context = (
        hashlib.sha256("\x1e".join(f"{t.role}:{t.text}" for t in history).encode()).hexdigest()
        if history
        else ""
    )
    return CacheKey(
        question=question_normalise(question),
        scope="all" if collection_ids is None else ",".join(map(str, sorted(collection_ids))),
        index_version=index_version(collection_ids),
        prompt_version=prompt_ref,
        context=context,
    )


def _fresh() -> Any:
    return timezone.now() - timedelta(seconds=settings.RAGAPP_CACHE_TTL_S)


def cache_get_exact(key: CacheKey) -> CacheHit | None:
    if not settings.RAGAPP_CACHE_EXACT:
        return None
    entry = (
        AnswerCache.objects.filter(key=key.digest, created_at__gte=_fresh())
        .only("id", "payload")
        .first()
    )
    if entry is None:
        return None
    AnswerCache.objects.filter(id=entry.id).update(hits=F("hits") + 1)
    return CacheHit(kind="exact", payload=entry.payload)


def cache_get_semantic(key: CacheKey, vector: Any) -> CacheHit | None:
    """The closest first-turn entry of the same scope and versions, when similar enough."""
    if not settings.RAGAPP_CACHE_SEMANTIC or key.context or vector is None:
        return None
    max_distance = 1.0 - settings.RAGAPP_CACHE_SEMANTIC_MIN
    entry = (
        AnswerCache.objects.filter(
            scope=key.scope,
            index_version=key.index_version,
            prompt_version=key.prompt_version,
            context="",
            created_at__gte=_fresh(),
            embedding__isnull=False,
        )
        .annotate(distance=CosineDistance("embedding", vector))
        .filter(distance__lte=max_distance)
        .order_by("distance")
        .only("id", "payload")
        .first()
    )
    if entry is None:
        return None
    AnswerCache.objects.filter(id=entry.id).update(hits=F("hits") + 1)
    return CacheHit(kind="semantic", payload=entry.payload, similarity=1 - entry.distance)  # type: ignore[attr-defined]


def cache_put(key: CacheKey, *, vector: Any, payload: dict[str, Any]) -> None:
    """Store an answer; entries of older index versions of the scope are purged."""
    if not (settings.RAGAPP_CACHE_EXACT or settings.RAGAPP_CACHE_SEMANTIC):
        return
    AnswerCache.objects.filter(scope=key.scope).exclude(index_version=key.index_version).delete()
    try:
        AnswerCache.objects.update_or_create(
            key=key.digest,
            defaults={
                "scope": key.scope,
                "index_version": key.index_version,
                "prompt_version": key.prompt_version,
                "context": key.context,
                "question": key.question,
                "embedding": vector if not key.context else None,
                "payload": payload,
            },
        )
    except IntegrityError:  # a concurrent request stored the same question first
        logger.info("answer cache entry stored concurrently", extra={"key": key.digest})
