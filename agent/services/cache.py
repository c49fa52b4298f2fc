"""Answer caches: exact (normalised question) and semantic (embedding similarity).

Both are keyed by the collections searched, the document-index version and the prompt version, so
a document added, re-ingested or deleted changes the version and old entries stop matching (and
are purged on the next store). The collections are the exact set the caller may read (or the one
they asked for), so a hit can only come from an answer made from the same collections: callers
who read different sets never share an entry. A follow-up turn's key includes a digest of its
conversation, and the semantic cache serves first turns only: a follow-up never reuses an answer
made without its context. Only answered (not escalated or refused) questions are stored.
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
    entry_id: int = 0


def question_normalise(question: str) -> str:
    text = unicodedata.normalize("NFKC", question).casefold()
    return _SPACE.sub(" ", text).strip().rstrip("?!. ")


def index_version(collection_ids: list[int]) -> str:
    """Changes whenever a ready document of the scope is added, re-processed or deleted."""
    qs = Document.objects.filter(status=Document.Status.READY, collection_id__in=collection_ids)
    row = qs.aggregate(n=Count("id"), last=Max("updated_at"), finished=Max("finished_at"))
    raw = f"{row['n']}|{row['last']}|{row['finished']}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _scope(collection_ids: list[int]) -> str:
    scope = ",".join(map(str, sorted(set(collection_ids))))
    # Readable for a few collections; an admin's long list still fits the column as a digest.
    return scope if len(scope) <= 100 else "sha256:" + hashlib.sha256(scope.encode()).hexdigest()


def cache_key(
    *, question: str, collection_ids: list[int], prompt_ref: str, history: list[Turn]
) -> CacheKey:
    context = (
        hashlib.sha256("\x1e".join(f"{t.role}:{t.text}" for t in history).encode()).hexdigest()
        if history
        else ""
    )
    return CacheKey(
        question=question_normalise(question),
        scope=_scope(collection_ids),
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
    return CacheHit(kind="exact", payload=entry.payload, entry_id=entry.id)


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
    similarity = 1 - entry.distance  # type: ignore[attr-defined]
    return CacheHit(
        kind="semantic", payload=entry.payload, similarity=similarity, entry_id=entry.id
    )


def cache_hit_count(hit: CacheHit) -> None:
    """Count a served hit; called inside the transaction that stores the turn, so a hit costs
    one commit (each waits for a disk flush), not two."""
    AnswerCache.objects.filter(id=hit.entry_id).update(hits=F("hits") + 1)


def cache_put(key: CacheKey, *, vector: Any, payload: dict[str, Any]) -> None:
    """Store an answer (one upsert, so a concurrent store of the same question is harmless);
    entries of older index versions of the scope are purged."""
    if not (settings.RAGAPP_CACHE_EXACT or settings.RAGAPP_CACHE_SEMANTIC):
        return
    AnswerCache.objects.filter(scope=key.scope).exclude(index_version=key.index_version).delete()
    entry = AnswerCache(
        key=key.digest,
        scope=key.scope,
        index_version=key.index_version,
        prompt_version=key.prompt_version,
        context=key.context,
        question=key.question,
        embedding=vector if not key.context else None,
        payload=payload,
    )
    AnswerCache.objects.bulk_create(
        [entry],
        update_conflicts=True,
        unique_fields=["key"],
        update_fields=[
            "scope",
            "index_version",
            "prompt_version",
            "context",
            "question",
            "embedding",
            "payload",
        ],
    )
