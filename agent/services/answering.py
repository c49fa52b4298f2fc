"""Answering: guard the question -> (rewrite) -> cache -> budget -> retrieve -> route -> fit the
context -> generate through the fallback chain (circuit breakers, one retry layer) -> validate
citations and their support -> gate -> persist with usage, cost, route and prompt version."""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import transaction

from agent.models import Conversation, GuardrailEvent, IdempotencyKey, Message
from agent.pipeline.compose import ESCALATION, answer_compose, refusal_text
from agent.pipeline.context import chars_count, context_fit, query_rewrite
from agent.pipeline.gate import gate_decide
from agent.pipeline.guards import leaks_prompt, neutralize_links, new_canary
from agent.pipeline.injection import injection_check
from agent.pipeline.prompt import prompt_load
from agent.pipeline.route import RouteDecision, route_decide
from agent.pipeline.schema import ClaimOut
from agent.pipeline.validate import citations_validate
from agent.providers.protocols import (
    Attempt,
    ChatRequest,
    ChatResult,
    Passage,
    Prompt,
    Turn,
)
from agent.services.cache import (
    CacheHit,
    CacheKey,
    cache_get_exact,
    cache_get_semantic,
    cache_key,
    cache_put,
)
from agent.services.chain import generate
from agent.services.idempotency import idempotency_begin, idempotency_complete
from agent.services.usage import budget_check, usage_record, usage_summary
from ingestion.models import Collection, Document
from ragapp.errors import InvalidInput, NotFound
from retrieval.providers.protocols import Candidate
from retrieval.providers.registry import embedder
from retrieval.services import passages_retrieve

logger = logging.getLogger(__name__)

HISTORY_TURNS = 20  # read from the conversation; the context budget decides what is sent
CUT_NOTE = "(The answer was interrupted before it finished; retry for the full answer.)"


@dataclass(frozen=True)
class AnswerOutcome:
    conversation: Conversation
    message: Message
    usage: dict[str, Any]
    replayed: bool = False


@dataclass
class AskState:
    """One question on its way through the pipeline (what ``answer_prepare`` gathers)."""

    user: Any
    question: str
    query: str
    conversation: Conversation | None
    collection_ids: list[int] | None
    history: list[Turn]
    prompt: Prompt
    key: CacheKey
    started: float
    trace: dict[str, Any] = field(default_factory=dict)
    vector: Any = None
    user_message: Message | None = None
    candidates: list[Candidate] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    route: RouteDecision | None = None
    canary: str = field(default_factory=new_canary)

    @property
    def route_name(self) -> str:
        return self.route.route if self.route else ""

    def request(self) -> ChatRequest:
        assert self.user_message is not None
        return ChatRequest(
            question=self.question,
            passages=self.passages,
            prompt=self.prompt,
            history=self.history,
            idempotency_key=f"msg-{self.user_message.id}",
            deadline=time.monotonic() + settings.RAGAPP_TURN_TIMEOUT_S,
            max_attempts=settings.RAGAPP_TURN_MAX_ATTEMPTS,
            canary=self.canary,
        )


def guardrail_record(
    *,
    stage: str,
    rule: str,
    action: str,
    excerpt: str = "",
    score=None,  # type: ignore[no-untyped-def]
    user=None,
    conversation=None,
) -> None:
    GuardrailEvent.objects.create(
        stage=stage,
        rule=rule,
        action=action,
        excerpt=excerpt[:300],
        score=score,
        user=user,
        conversation=conversation,
    )


def _clean_question(question: str, *, user) -> str:  # type: ignore[no-untyped-def]
    # Invisible format characters (zero-width spaces, bidi controls) carry hidden instructions.
    cleaned = "".join(ch for ch in question if unicodedata.category(ch) != "Cf").strip()
    if not cleaned:
        raise InvalidInput("Please type a question.", code="empty_question")
    if len(cleaned) > settings.RAGAPP_MAX_QUESTION_CHARS:
        guardrail_record(
            stage="input",
            rule="question_too_long",
            action="rejected",
            excerpt=cleaned[:120],
            score=len(cleaned),
            user=user,
        )
        raise InvalidInput(
            f"Questions are limited to {settings.RAGAPP_MAX_QUESTION_CHARS} characters.",
            code="question_too_long",
            extra={"max_chars": settings.RAGAPP_MAX_QUESTION_CHARS, "chars": len(cleaned)},
        )
    verdict = injection_check(cleaned)
    if verdict.score >= settings.RAGAPP_INJECTION_FLAG_AT:
        rejected = verdict.score >= settings.RAGAPP_INJECTION_REJECT_AT
        guardrail_record(
            stage="input",
            rule="prompt_injection",
            action="rejected" if rejected else "flagged",
            excerpt=f"{verdict.rule}: {verdict.excerpt}",
            score=verdict.score,
            user=user,
        )
        if rejected:
            raise InvalidInput(
                "I can only answer questions about the documentation.", code="prompt_injection"
            )
    return cleaned


def conversation_get_for_user(*, conversation_id, user) -> Conversation:  # type: ignore[no-untyped-def]
    """The user's conversation; another user's answers exactly like a missing one."""
    conversation = Conversation.objects.filter(id=conversation_id, user=user).first()
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def _topics(collection_ids: list[int] | None) -> list[str]:
    qs = Document.objects.filter(status=Document.Status.READY)
    if collection_ids is not None:
        qs = qs.filter(collection_id__in=collection_ids)
    return list(qs.order_by("title").values_list("title", flat=True).distinct()[:8])


# --- the pipeline ---------------------------------------------------------------------------------


def answer_question(
    *,
    user,
    question: str,
    conversation_id=None,
    collection: str | None = None,
    idempotency_key: str = "",  # type: ignore[no-untyped-def]
) -> AnswerOutcome:
    """Answer ``question`` from the documents, or say honestly why not. Persists both turns.

    With ``idempotency_key``, a repeat of the same request returns the stored answer without
    calling any provider again.
    """
    replay, claim = idempotency_begin(
        user=user,
        key=idempotency_key,
        question=question,
        conversation_id=conversation_id,
        collection=collection,
    )
    if replay is not None:
        return outcome_replayed(replay)
    try:
        turn = answer_prepare(
            user=user, question=question, conversation_id=conversation_id, collection=collection
        )
        outcome = answer_from_cache(turn)
        if outcome is None:
            answer_retrieve(turn)
            result, attempts, degraded = (None, [], False)
            if turn.passages:
                result, attempts, degraded = generate(
                    turn.request(), route=turn.route_name, trace=turn.trace
                )
            outcome = answer_finish(turn, result=result, attempts=attempts, degraded=degraded)
    except BaseException:
        if claim is not None:
            claim.delete()  # a failed request may be retried with the same key
        raise
    if claim is not None:
        idempotency_complete(claim, message=outcome.message, usage=outcome.usage)
    return outcome


def outcome_replayed(message: Message) -> AnswerOutcome:
    claim = IdempotencyKey.objects.filter(message=message).only("usage").first()
    return AnswerOutcome(
        conversation=message.conversation,
        message=message,
        usage=claim.usage if claim else {},
        replayed=True,
    )


def answer_prepare(*, user, question: str, conversation_id=None, collection=None) -> AskState:  # type: ignore[no-untyped-def]
    """Clean the question, load the conversation and its history, rewrite a follow-up."""
    started = time.perf_counter()
    question = _clean_question(question, user=user)
    conversation = (
        conversation_get_for_user(conversation_id=conversation_id, user=user)
        if conversation_id
        else None
    )
    collection_ids = None
    if collection:
        found = Collection.objects.filter(slug=collection).values_list("id", flat=True).first()
        if found is None:
            raise NotFound("No such collection.")
        collection_ids = [found]
    history = (
        [
            Turn(role=m.role, text=m.text)
            for m in reversed(conversation.messages.order_by("-created_at", "-id")[:HISTORY_TURNS])
        ]
        if conversation
        else []
    )
    prompt = prompt_load(settings.RAGAPP_PROMPT)
    query = query_rewrite(question, history)
    key = cache_key(
        question=question,
        collection_ids=collection_ids,
        prompt_ref=f"{prompt.id}@{prompt.version}",
        history=history,
    )
    turn = AskState(
        user=user,
        question=question,
        query=query,
        conversation=conversation,
        collection_ids=collection_ids,
        history=history,
        prompt=prompt,
        key=key,
        started=started,
    )
    if query != question:
        turn.trace["rewritten_query"] = query
    return turn


def _start_turn(turn: AskState) -> None:
    """Create the conversation (a first turn) and store the user's message."""
    if turn.conversation is None:
        turn.conversation = Conversation.objects.create(user=turn.user, title=turn.question[:80])
    turn.user_message = Message.objects.create(
        conversation=turn.conversation, role=Message.Role.USER, text=turn.question
    )


def answer_from_cache(turn: AskState) -> AnswerOutcome | None:
    """Serve the question from the exact or semantic cache; a hit costs nothing."""
    hit = cache_get_exact(turn.key)
    if hit is None and settings.RAGAPP_CACHE_SEMANTIC and not turn.key.context:
        turn.vector = embedder().embed_sentences([turn.key.question])[0]  # type: ignore[attr-defined]
        hit = cache_get_semantic(turn.key, turn.vector)
    if hit is None:
        return None
    return _persist_cached(turn, hit)


def _persist_cached(turn: AskState, hit: CacheHit) -> AnswerOutcome:
    payload = hit.payload
    with transaction.atomic():
        _start_turn(turn)
        assert turn.conversation is not None
        message = Message.objects.create(
            conversation=turn.conversation,
            role=Message.Role.ASSISTANT,
            text=payload["text"],
            decision=payload["decision"],
            confidence=payload["confidence"],
            citations=payload["citations"],
            prompt_id=turn.prompt.id,
            prompt_version=turn.prompt.version,
            prompt_hash=turn.prompt.hash,
            provider=payload["provider"],
            model=payload["model"],
            route=payload.get("route", ""),
            cache=hit.kind,
            trace={
                **turn.trace,
                "cache": {"kind": hit.kind, "similarity": round(hit.similarity, 4)},
                "saved_usd": payload.get("cost_usd", 0.0),
            },
            latency_ms=int((time.perf_counter() - turn.started) * 1000),
        )
        turn.conversation.save(update_fields=["updated_at"])
    logger.info("answered from cache", extra={"cache": hit.kind, "ms": message.latency_ms})
    return AnswerOutcome(conversation=turn.conversation, message=message, usage=usage_summary([]))


def answer_retrieve(turn: AskState) -> None:
    """Check the budget, store the question, retrieve, route and fit the context budget."""
    budget_check(user=turn.user, conversation=turn.conversation)
    _start_turn(turn)
    started = time.perf_counter()
    turn.candidates = passages_retrieve(turn.query, collection_ids=turn.collection_ids)
    turn.trace["retrieve_ms"] = round((time.perf_counter() - started) * 1000, 1)
    passages = [
        Passage(
            number=i,
            chunk_id=c.chunk_id,
            text=c.text,
            title=c.document_title,
            page=c.page,
            heading=c.heading,
            score=c.score,
        )
        for i, c in enumerate(turn.candidates, start=1)
    ]
    turn.route = route_decide(
        question=turn.question,
        passages=passages,
        document_titles=[c.document_title for c in turn.candidates],
        depth=sum(1 for t in turn.history if t.role == "user"),
        max_words=settings.RAGAPP_ROUTE_HARD_WORDS,
        max_depth=settings.RAGAPP_ROUTE_HARD_DEPTH,
        max_documents=settings.RAGAPP_ROUTE_HARD_DOCUMENTS,
    )
    turn.trace["route"] = {"route": turn.route.route, "reason": turn.route.reason}
    count = (
        embedder().count_tokens if settings.RAGAPP_CONTEXT_TOKENIZER == "embedder" else chars_count
    )
    fitted = context_fit(
        fixed=turn.prompt.system + turn.prompt.user + turn.question,
        passages=passages,
        history=turn.history,
        window=settings.RAGAPP_CONTEXT_WINDOW_TOKENS,
        reserve=settings.RAGAPP_CONTEXT_RESERVE_TOKENS,
        count=count,
        verbatim_turns=settings.RAGAPP_HISTORY_VERBATIM_TURNS,
    )
    turn.passages, turn.history = fitted.passages, fitted.history
    turn.trace["context"] = {
        "tokens": fitted.tokens,
        "tokenizer": settings.RAGAPP_CONTEXT_TOKENIZER,
        "dropped_passages": fitted.dropped_passages,
        "summarised_turns": fitted.summarised_turns,
    }


def answer_finish(
    turn: AskState,
    *,
    result: ChatResult | None,
    attempts: list[Attempt],
    degraded: bool,
    partial: bool = False,
) -> AnswerOutcome:
    """Validate, gate, compose and persist the answer with its usage."""
    assert turn.conversation is not None
    user, conversation, passages = turn.user, turn.conversation, turn.passages
    decision, text, cited, confidence = "refused", "", [], 0.0
    if not passages:
        guardrail_record(
            stage="retrieval",
            rule="no_evidence",
            action="refused",
            excerpt=turn.question,
            user=user,
            conversation=conversation,
        )
    elif result is None:
        decision, text = "escalated", ESCALATION  # every model failed: a person takes over
    else:
        decision, text, cited, confidence = _judge(turn, result, partial=partial)
    if decision == "refused":
        text, cited = refusal_text(_topics(turn.collection_ids)), []
    by_chunk = {c.chunk_id: c for c in turn.candidates}
    citations = [
        {
            "number": label,
            "chunk_id": p.chunk_id,
            "document_id": by_chunk[p.chunk_id].document_id,
            "document_title": p.title,
            "page": p.page,
            "heading": p.heading,
            "text": p.text,
            "scores": by_chunk[p.chunk_id].scores,
        }
        for label, p in cited
    ]
    latency_ms = int((time.perf_counter() - turn.started) * 1000)
    turn.trace["overhead_ms"] = round(latency_ms - turn.trace.get("provider_ms", 0), 1)
    with transaction.atomic():
        records = usage_record(
            attempts,
            route=f"answer.{turn.route_name}" if turn.route_name else "answer",
            prompt=turn.prompt,
            conversation=conversation,
            user=user,
        )
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=text,
            decision=decision,
            confidence=confidence,
            citations=citations,
            prompt_id=turn.prompt.id,
            prompt_version=turn.prompt.version,
            prompt_hash=turn.prompt.hash,
            provider=result.provider if result else "",
            model=result.model if result else "",
            degraded=degraded or partial,
            partial=partial,
            route=turn.route_name,
            trace=turn.trace,
            latency_ms=latency_ms,
        )
        conversation.save(update_fields=["updated_at"])
    usage = usage_summary(records)
    if decision == "answered" and not (degraded or partial):
        cache_put(
            turn.key,
            vector=turn.vector,
            payload={
                "text": text,
                "decision": decision,
                "confidence": confidence,
                "citations": citations,
                "provider": message.provider,
                "model": message.model,
                "route": turn.route_name,
                "cost_usd": usage["cost_usd"],
            },
        )
    logger.info(
        "answered",
        extra={
            "decision": decision,
            "conversation": str(conversation.id),
            "ms": latency_ms,
            "degraded": degraded,
            "route": turn.route_name,
        },
    )
    return AnswerOutcome(conversation=conversation, message=message, usage=usage)


def claim_guard(turn: AskState, claim: ClaimOut, *, record: bool = True) -> ClaimOut | None:
    """The output guards on one claim: None when it leaks the prompt (the answer is then refused);
    otherwise the claim with every image and each link outside the allow-list neutralised.
    ``record=False`` checks without logging (the stream shows claims the final check logs)."""
    leak = leaks_prompt(claim.text, system_prompt=turn.prompt.system, canary=turn.canary)
    text, findings = neutralize_links(
        claim.text, allowed_hosts=frozenset(settings.RAGAPP_LINK_ALLOWED_HOSTS)
    )
    if record:
        for rule, action, excerpt in (
            [(leak.rule, "blocked", leak.excerpt)]
            if leak
            else [(f.rule, "removed", f.excerpt) for f in findings]
        ):
            guardrail_record(
                stage="output",
                rule=rule,
                action=action,
                excerpt=excerpt,
                user=turn.user,
                conversation=turn.conversation,
            )
    return None if leak else claim.model_copy(update={"text": text})


def _guard_output(turn: AskState, result: ChatResult) -> ChatResult | None:
    claims = []
    for claim in result.answer.claims:
        guarded = claim_guard(turn, claim)
        if guarded is None:
            return None
        claims.append(guarded)
    return replace(result, answer=result.answer.model_copy(update={"claims": claims}))


def _judge(
    turn: AskState, result: ChatResult, *, partial: bool
) -> tuple[str, str, list[tuple[int, Passage]], float]:
    """Output guards, citation and support validation, then the gate:
    (decision, text, cited, confidence)."""
    guarded = _guard_output(turn, result)
    if guarded is None:
        return "refused", "", [], 0.0
    result = guarded
    validated = citations_validate(
        result.answer,
        passages=turn.passages,
        embed=embedder().embed_sentences,  # type: ignore[attr-defined]
        support_min=settings.RAGAPP_SUPPORT_MIN,
    )
    for removed in validated.removed:
        guardrail_record(
            stage="output",
            rule="unsupported_claim" if removed.reason == "unsupported" else "invalid_citation",
            action="removed",
            excerpt=f"{removed.reason}: {removed.claim.text}",
            score=removed.score,
            user=turn.user,
            conversation=turn.conversation,
        )
    turn.trace["support"] = validated.support
    confidence = result.answer.confidence
    decision = gate_decide(
        model_decision=result.answer.decision,
        confidence=confidence,
        has_claims=bool(validated.claims),
        answer_at=settings.RAGAPP_GATE_ANSWER,
        escalate_at=settings.RAGAPP_GATE_ESCALATE,
        unsupported_share=validated.unsupported_share,
        max_unsupported=settings.RAGAPP_SUPPORT_MAX_REMOVED,
    )
    if partial and validated.claims and decision == "refused":
        decision = "answered"  # the user already read these validated claims
    if decision == "refused":
        guardrail_record(
            stage="output",
            rule="no_evidence" if validated.unsupported_share == 0 else "unsupported_answer",
            action="refused",
            excerpt=turn.question,
            score=confidence,
            user=turn.user,
            conversation=turn.conversation,
        )
        return decision, "", [], confidence
    if decision == "escalated" and validated.unsupported_share > 0:
        guardrail_record(
            stage="output",
            rule="unsupported_answer",
            action="escalated",
            excerpt=turn.question,
            score=validated.unsupported_share,
            user=turn.user,
            conversation=turn.conversation,
        )
    if not validated.claims:
        return decision, ESCALATION, [], confidence
    composed = answer_compose(validated.claims, turn.passages)
    text = composed.text if decision == "answered" else f"{ESCALATION} {composed.text}"
    if partial:
        text = f"{text} {CUT_NOTE}"
    return decision, text, composed.cited, confidence
