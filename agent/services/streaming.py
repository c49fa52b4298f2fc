"""Answering as a stream of events for Server-Sent Events.

Events: ``meta`` (conversation, route), ``delta`` (answer text as validated claims arrive, with
their citations), then ``done`` (the ``AnswerOutcome``, exactly what the JSON API returns). Each
claim is shown only once it is complete, cites a retrieved passage that supports it, and the
model's head (decision, confidence) says it is answering above the gate's threshold.

The fallback chain applies only before the first delta; a stream that breaks after it keeps the
text shown, is stored ``partial`` (and degraded), and the client offers a retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.urls import reverse

from agent.pipeline.compose import answer_compose
from agent.pipeline.schema import AnswerOut, ClaimOut
from agent.pipeline.validate import citations_validate
from agent.providers.protocols import Attempt, ChatResult, StreamHead
from agent.services.answering import (
    AnswerOutcome,
    AskState,
    answer_finish,
    answer_from_cache,
    answer_prepare,
    answer_retrieve,
    claim_guard,
    outcome_replayed,
)
from agent.services.chain import chain_eligible, chain_record, trace_generation
from agent.services.idempotency import idempotency_begin, idempotency_complete
from ragapp.errors import ProviderError
from ragapp.tracing import span_stream
from retrieval.providers.registry import embedder

logger = logging.getLogger(__name__)

Event = tuple[str, Any]  # ("meta" | "delta" | "done", data); "done" carries an AnswerOutcome


def answer_stream(
    *,
    user,
    question: str,
    conversation_id=None,
    collection: str | None = None,
    idempotency_key: str = "",  # type: ignore[no-untyped-def]
    session_key: str = "",
) -> Iterator[Event]:
    """Validate the request and do everything up to generation now (so errors such as an
    exceeded budget are raised before the stream opens); the returned iterator generates.
    One ``ragapp.answer`` span covers both parts."""
    return span_stream(
        "ragapp.answer",
        lambda: _stream_begin(
            user=user,
            question=question,
            conversation_id=conversation_id,
            collection=collection,
            idempotency_key=idempotency_key,
            session_key=session_key,
        ),
        stream=True,
    )


def _stream_begin(
    *,
    user,
    question: str,
    conversation_id,
    collection: str | None,
    idempotency_key: str,
    session_key: str,
) -> Iterator[Event]:  # type: ignore[no-untyped-def]
    replay, claim = idempotency_begin(
        user=user,
        key=idempotency_key,
        question=question,
        conversation_id=conversation_id,
        collection=collection,
    )
    if replay is not None:
        return iter([("done", outcome_replayed(replay))])
    try:
        turn = answer_prepare(
            user=user,
            question=question,
            conversation_id=conversation_id,
            collection=collection,
            session_key=session_key,
        )
        cached = answer_from_cache(turn)
        if cached is None:
            answer_retrieve(turn)
    except BaseException:
        if claim is not None:
            claim.delete()
        raise
    events = iter([("done", cached)]) if cached is not None else _generate_events(turn)

    def finished() -> Iterator[Event]:
        outcome = None
        try:
            for name, data in events:
                if name == "done":
                    outcome = data
                yield name, data
        finally:
            if claim is not None:
                if outcome is None:
                    claim.delete()  # the client went away or it failed: a retry may reuse the key
                else:
                    idempotency_complete(claim, message=outcome.message, usage=outcome.usage)

    return finished()


def _generate_events(turn: AskState) -> Iterator[Event]:
    assert turn.conversation is not None
    yield "meta", {"conversation": str(turn.conversation.id), "route": turn.route_name}
    if not turn.passages:
        yield "done", answer_finish(turn, result=None, attempts=[], degraded=False)
        return
    request = turn.request(first_token_budget_s=settings.RAGAPP_FIRST_TOKEN_BUDGET_S)
    attempts: list[Attempt] = []
    skipped: list[str] = []
    started = time.perf_counter()
    shown = _Shown(turn)
    result: ChatResult | None = None
    degraded, partial = True, False
    for position, model, call in chain_eligible(
        request, route=turn.route_name, attempts=attempts, skipped=skipped
    ):
        shown.reset()
        try:
            for event in model.stream(call):
                if isinstance(event, ChatResult):
                    result = event
                else:
                    delta = shown.add(event)
                    if delta:
                        if "ttft_ms" not in turn.trace:
                            elapsed = time.perf_counter() - turn.started
                            turn.trace["ttft_ms"] = round(elapsed * 1000, 1)
                        yield "delta", delta
        except ProviderError as exc:
            attempts.extend(exc.extra.get("attempts", []))
            chain_record(model, error=exc)
            if exc.extra.get("cause") == "first_token_budget":
                turn.trace.setdefault("first_token_budget", []).append(
                    f"{model.provider}/{model.model}: {exc.code}, not waiting "
                    f"{exc.extra['wait_s']:.1f} s"
                )
            if shown.claims:  # the user is reading this model's answer: no fallback now
                result, partial = shown.result(model.provider, model.model), True
                degraded = position > 0
                turn.trace["cut"] = exc.extra.get("cause", exc.code)
                break
            continue
        assert result is not None
        attempts.extend(result.attempts)
        chain_record(model)
        degraded = position > 0
        break
    trace_generation(
        turn.trace, started=started, attempts=attempts, skipped=skipped, prompt=turn.prompt
    )
    yield (
        "done",
        answer_finish(turn, result=result, attempts=attempts, degraded=degraded, partial=partial),
    )


class _Shown:
    """The claims of the current model's stream that were validated and shown to the user."""

    def __init__(self, turn: AskState) -> None:
        self.turn = turn
        self.reset()

    def reset(self) -> None:
        self.head: StreamHead | None = None
        self.pending: list[ClaimOut] = []
        self.claims: list[ClaimOut] = []
        self.text = ""
        self.leaked = False

    def _showable(self) -> bool:
        return (
            self.head is not None
            and not self.leaked
            and self.head.decision == "answer"
            and self.head.confidence >= settings.RAGAPP_GATE_ANSWER
        )

    def add(self, event: StreamHead | ClaimOut) -> dict[str, Any] | None:
        if isinstance(event, StreamHead):
            self.head = event
        else:
            self.pending.append(event)
        if not self._showable():
            return None
        fresh = []
        for claim in self.pending:
            guarded = claim_guard(self.turn, claim, record=False)
            if guarded.leaked:
                self.leaked = True  # nothing more of this stream is shown; the answer is refused
                break
            if guarded.claim is None:
                continue
            checked = citations_validate(
                AnswerOut(decision="answer", confidence=1.0, claims=[guarded.claim]),
                passages=self.turn.passages,
                embed=embedder().embed_sentences,  # type: ignore[attr-defined]
                support_min=settings.RAGAPP_SUPPORT_MIN,
            )
            fresh += checked.claims
        self.pending = []
        if not fresh:
            return None
        before = {label for label, _ in answer_compose(self.claims, self.turn.passages).cited}
        self.claims += fresh
        composed = answer_compose(self.claims, self.turn.passages)
        delta, self.text = composed.text[len(self.text) :], composed.text
        documents = {c.chunk_id: c.document_id for c in self.turn.candidates}
        cited = [
            _citation(label, passage, documents.get(passage.chunk_id))
            for label, passage in composed.cited
            if label not in before
        ]
        return {"text": delta, "citations": cited}

    def result(self, provider: str, model: str) -> ChatResult:
        """What was shown before the stream broke, as the model's (partial) answer."""
        assert self.head is not None
        answer = AnswerOut(decision="answer", confidence=self.head.confidence, claims=self.claims)
        return ChatResult(answer=answer, provider=provider, model=model, attempts=[])


def _citation(label: int, passage: Any, document_id: str | None) -> dict[str, Any]:
    return {
        "number": label,
        "document": {"id": document_id, "title": passage.title},
        "url": reverse("document-file", args=[document_id]) if document_id else None,
        "page": passage.page,
        "heading": passage.heading,
        "text": passage.text,
    }


__all__ = ["AnswerOutcome", "answer_stream"]
