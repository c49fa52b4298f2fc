"""/healthz: the process is alive. /readyz: database, broker and embedder are usable."""

from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check(fn) -> dict:  # type: ignore[no-untyped-def, type-arg]
    started = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:  # a readiness probe reports failures, it does not raise them
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1), **(detail or {})}


def _database() -> dict:  # type: ignore[type-arg]
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError("pgvector extension missing")
    return {"pgvector": row[0]}


def _broker() -> dict:  # type: ignore[type-arg]
    from ragapp.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        transport = conn.transport_cls
    return {"transport": str(transport)}


def _embedder() -> dict:  # type: ignore[type-arg]
    from retrieval.providers.registry import embedder

    emb = embedder()
    if not emb.loaded:
        raise RuntimeError("embedding model not loaded yet")
    return {"model": emb.name}


def _chat_models() -> dict:  # type: ignore[type-arg]
    """Circuit breakers of the chat models. An open one does not make the app unready: the
    fallback chain still answers (marked degraded)."""
    from agent.services.breaker import breaker_states

    states = breaker_states()
    return {
        "breakers": states,
        "open": sorted(k for k, v in states.items() if v["state"] != "closed"),
    }


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _check(_database),
        "broker": _check(_broker),
        "embedder": _check(_embedder),
        "chat_models": _check(_chat_models),
    }
    ready = all(c["ok"] for name, c in checks.items() if name != "chat_models")
    body = {
        "status": "ready" if ready else "not ready",
        "checks": checks,
        "embedded_database": settings.EMBEDDED_DATABASE,
    }
    return JsonResponse(body, status=200 if ready else 503)
