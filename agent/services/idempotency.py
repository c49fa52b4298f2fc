"""Idempotent /ask: a client's ``Idempotency-Key`` is claimed once; a repeat of the finished
request gets the stored answer without any provider call."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import IntegrityError, transaction

from agent.errors import RequestInProgress
from agent.models import IdempotencyKey, Message
from ragapp.errors import InvalidInput

logger = logging.getLogger(__name__)


def request_hash(question: str, conversation_id: Any, collection: str | None) -> str:
    raw = f"{question}\x1f{conversation_id or ''}\x1f{collection or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()


def idempotency_claim(*, user, key: str, request_hash: str) -> IdempotencyKey | Message:  # type: ignore[no-untyped-def]
    """Claim ``key`` for this request, or return the answer message a finished request with it
    gave (its usage is on the claim: ``IdempotencyKey.usage``)."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key, request_hash=request_hash)
    except IntegrityError:
        pass
    found = IdempotencyKey.objects.select_related("message__conversation").get(user=user, key=key)
    if found.request_hash != request_hash:
        raise InvalidInput(
            "This Idempotency-Key was already used for a different request.",
            code="idempotency_key_reused",
        )
    if found.message is None:
        raise RequestInProgress("This request is still being answered; retry in a moment.")
    logger.info("idempotent replay", extra={"key": key, "message_id": found.message_id})
    return found.message


def idempotency_begin(
    *,
    user,
    key: str,
    question: str,
    conversation_id: Any,
    collection: str | None,  # type: ignore[no-untyped-def]
) -> tuple[Message | None, IdempotencyKey | None]:
    """For an ``Idempotency-Key``: (the stored answer to replay, or None; the claim to complete
    when the new answer is stored, or None). No key: (None, None)."""
    if not key:
        return None, None
    claimed = idempotency_claim(
        user=user, key=key, request_hash=request_hash(question, conversation_id, collection)
    )
    return (claimed, None) if isinstance(claimed, Message) else (None, claimed)


def idempotency_complete(claim: IdempotencyKey, *, message: Message, usage: dict[str, Any]) -> None:
    claim.message = message
    claim.usage = usage
    claim.save(update_fields=["message", "usage"])
