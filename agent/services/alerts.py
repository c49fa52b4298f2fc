"""Alerts: record what an operator must look at and post it to the configured webhook."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from agent.models import Alert

logger = logging.getLogger(__name__)


def alert_raise(
    *, kind: str, message: str, key: str = "", details: dict[str, Any] | None = None
) -> Alert:
    """Record an alert and post it to ``RAGAPP_ALERT_WEBHOOK_URL``.

    While an alert of the same kind and key is open (not resolved), that one is returned and
    nothing is posted again, so a check that runs every minute does not page every minute.
    """
    existing = Alert.objects.filter(kind=kind, key=key, resolved_at__isnull=True).first()
    if existing is not None:
        return existing
    alert = Alert.objects.create(kind=kind, key=key, message=message, details=details or {})
    logger.warning(
        "alert raised", extra={"alert_kind": kind, "alert_key": key, "alert_id": alert.id}
    )
    url = settings.RAGAPP_ALERT_WEBHOOK_URL
    if url:
        alert.webhook_status = _post(url, alert)
        alert.save(update_fields=["webhook_status"])
    return alert


def alert_resolve(*, kind: str, key: str = "") -> int:
    """Close the open alerts of a kind and key; returns how many were open."""
    return Alert.objects.filter(kind=kind, key=key, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )


def _post(url: str, alert: Alert) -> str:
    payload = {
        "id": alert.id,
        "kind": alert.kind,
        "key": alert.key,
        "message": alert.message,
        "details": alert.details,
        "created_at": alert.created_at.isoformat(),
        "text": f"[ragapp] {alert.kind}: {alert.message}",  # Slack-compatible
    }
    try:
        response = httpx.post(url, json=payload, timeout=settings.RAGAPP_ALERT_WEBHOOK_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        logger.warning(
            "alert webhook failed", extra={"alert_id": alert.id, "error": str(exc)[:200]}
        )
        return f"failed: {str(exc)[:190]}"
    return "sent"
