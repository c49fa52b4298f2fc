"""The batch lane: non-interactive questions (bulk imports, evaluation runs) answered through the
provider's batch endpoint where it has one (the OpenAI Batch API, at its discounted price), inline
through the normal fallback chain where it has not (the extractive answerer).

Each question goes through the same pipeline as a chat turn (guard, cache, retrieve, context
budget; then validation, gate and storage) and is stored as a conversation of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import IO, Any

from django.conf import settings

from agent.providers.protocols import ChatResult
from agent.providers.registry import chat_models
from agent.services.answering import (
    AnswerOutcome,
    AskState,
    answer_finish,
    answer_from_cache,
    answer_prepare,
    answer_retrieve,
)
from agent.services.breaker import breaker_allow
from agent.services.chain import chain_record, generate
from agent.services.usage import usage_record
from ragapp.errors import InvalidInput, ProviderError

logger = logging.getLogger(__name__)


def questions_read(fh: IO[str]) -> list[dict[str, Any]]:
    """A JSONL file of ``{"question": ..., "collection"?: ...}`` objects (blank lines skipped)."""
    rows = []
    for number, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"line {number}: not JSON ({exc.msg})", code="bad_jsonl") from exc
        if not isinstance(row, dict) or not str(row.get("question", "")).strip():
            raise InvalidInput(f'line {number}: needs a "question"', code="bad_jsonl")
        rows.append(row)
    return rows


def _batch_model() -> Any:
    """The default chain's first model when it has a batch endpoint and its breaker allows it."""
    first = chat_models()[0]
    if not hasattr(first, "generate_batch"):
        return None
    return first if breaker_allow(provider=first.provider, model=first.model) else None


def questions_batch(*, user, rows: Iterable[dict[str, Any]]) -> list[AnswerOutcome]:  # type: ignore[no-untyped-def]
    """Answer every question of ``rows`` (see ``questions_read``) for ``user``, in order.

    Cache hits are served at once; the rest are retrieved, then sent to the provider as one
    batch. A line the batch could not answer, or every line when the batch itself fails or the
    provider has no batch endpoint, is answered inline through the fallback chain.
    """
    outcomes: dict[int, AnswerOutcome] = {}
    pending: list[tuple[int, AskState]] = []
    for i, row in enumerate(rows):
        turn = answer_prepare(user=user, question=row["question"], collection=row.get("collection"))
        cached = answer_from_cache(turn)
        if cached is not None:
            outcomes[i] = cached
            continue
        answer_retrieve(turn)
        if turn.passages:
            pending.append((i, turn))
        else:
            outcomes[i] = answer_finish(turn, result=None, attempts=[], degraded=False)
    results = _submit([turn for _, turn in pending])
    for i, turn in pending:
        result = results.get(_key(turn))
        if isinstance(result, ChatResult):
            outcomes[i] = answer_finish(
                turn, result=result, attempts=result.attempts, degraded=False, batch=True
            )
            continue
        if result is not None and result.extra.get("attempts"):  # a failed line still cost
            usage_record(
                result.extra["attempts"],
                route="batch",
                prompt=turn.prompt,
                conversation=turn.conversation,
                user=turn.user,
                batch=True,
            )
        answer, attempts, degraded = generate(
            turn.request(), route=turn.route_name, trace=turn.trace
        )
        outcomes[i] = answer_finish(turn, result=answer, attempts=attempts, degraded=degraded)
    return [outcomes[i] for i in sorted(outcomes)]


def _key(turn: AskState) -> str:
    assert turn.user_message is not None
    return f"msg-{turn.user_message.id}"


def _submit(turns: list[AskState]) -> dict[str, ChatResult | ProviderError]:
    """The batch's result per turn key; empty when there is no batch lane or the batch failed."""
    model = _batch_model() if turns else None
    if model is None:
        return {}
    try:
        results = model.generate_batch(
            {_key(turn): turn.request() for turn in turns},
            poll_s=settings.RAGAPP_BATCH_POLL_S,
            timeout_s=settings.RAGAPP_BATCH_TIMEOUT_S,
        )
    except ProviderError as exc:
        chain_record(model, error=exc)
        logger.warning("batch failed; answering inline", extra={"code": exc.code})
        return {}
    chain_record(model)
    logger.info(
        "batch answered",
        extra={
            "questions": len(turns),
            "ok": sum(isinstance(r, ChatResult) for r in results.values()),
        },
    )
    return results
