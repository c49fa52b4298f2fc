"""Answering: guard the question -> (rewrite) -> cache -> budget -> retrieve -> route -> fit the
context -> generate through the fallback chain (circuit breakers, one retry layer) -> validate
citations and their support -> gate -> persist with usage, cost, route and prompt version."""

from __future__ import annotations

import logging
import time
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from agent.models import Conversation, GuardrailEvent, IdempotencyKey, Message
from agent.pipeline.compose import ESCALATION, answer_compose, refusal_text
from agent.pipeline.context import chars_count, context_fit, query_rewrite
from agent.pipeline.gate import gate_decide
from agent.pipeline.guards import (
    Finding,
    claim_task,
    leaks_prompt,
    neutralize_links,
    new_canary,
    passage_screen,
)
from agent.pipeline.injection import injection_check
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
    cache_hit_count,
    cache_key,
    cache_put,
)
from agent.services.chain import generate
from agent.services.idempotency import idempotency_begin, idempotency_complete
from agent.services.prompts import prompt_choose
from agent.services.review import review_answer_saved
from agent.services.usage import budget_check, usage_record, usage_summary
from ingestion.models import Chunk, Document
from ingestion.pipeline.injection import addressed
from ingestion.pipeline.language import english
from ingestion.providers.registry import instruction_reasons, instructions_find
from ingestion.selectors import collection_get_visible, collection_ids_visible
from ragapp.errors import InvalidInput, NotFound
from ragapp.observability import log_context_update
from ragapp.tracing import current_trace_id, span, span_set, text_fingerprint, traced
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
    collection_ids: list[int]  # what the caller may read (or the one collection asked for)
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
    session_key: str = ""  # an anonymous visitor's (``user`` is None)
    # A first turn's conversation id, chosen up front: it decides the canary bucket.
    new_conversation_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def route_name(self) -> str:
        return self.route.route if self.route else ""

    def request(self, *, first_token_budget_s: float = 0.0) -> ChatRequest:
        """The chat request of this turn; ``first_token_budget_s`` (streamed turns) counts from
        the turn's start."""
        assert self.user_message is not None
        now = time.monotonic()
        elapsed = time.perf_counter() - self.started
        return ChatRequest(
            question=self.question,
            passages=self.passages,
            prompt=self.prompt,
            history=self.history,
            idempotency_key=f"msg-{self.user_message.id}",
            deadline=now + settings.RAGAPP_TURN_TIMEOUT_S,
            max_attempts=settings.RAGAPP_TURN_MAX_ATTEMPTS,
            canary=self.canary,
            first_token_by=now - elapsed + first_token_budget_s if first_token_budget_s else 0.0,
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


@traced("ragapp.answer.guard_input")
def _clean_question(question: str, *, user) -> str:  # type: ignore[no-untyped-def]
    # Invisible format characters (zero-width spaces, bidi controls) carry hidden instructions.
    cleaned = "".join(ch for ch in question if unicodedata.category(ch) != "Cf").strip()
    span_set(text_fingerprint(cleaned))
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
    span_set(injection_score=verdict.score)
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


def conversation_get_for_user(*, conversation_id, user, session_key: str = "") -> Conversation:  # type: ignore[no-untyped-def]
    """The user's conversation (``user=None``: the anonymous session's); anyone else's answers
    exactly like a missing one."""
    owner = Q(user=user) if user is not None else Q(user=None, session_key=session_key)
    conversation = Conversation.objects.filter(owner, id=conversation_id).first()
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def collection_scope(*, user, collection: str | None) -> list[int]:  # type: ignore[no-untyped-def]
    """The collections a question searches: all the caller may read, or the one asked for; a
    collection the caller may not read answers exactly like a missing one."""
    if collection:
        return [collection_get_visible(collection, user=user).id]
    return collection_ids_visible(user)


def _topics(collection_ids: list[int]) -> list[str]:
    qs = Document.objects.filter(status=Document.Status.READY, collection_id__in=collection_ids)
    return list(qs.order_by("title").values_list("title", flat=True).distinct()[:8])


# --- the pipeline ---------------------------------------------------------------------------------


@traced("ragapp.answer", stream=False)
def answer_question(
    *,
    user,
    question: str,
    conversation_id=None,
    collection: str | None = None,
    idempotency_key: str = "",  # type: ignore[no-untyped-def]
    session_key: str = "",
) -> AnswerOutcome:
    """Answer ``question`` from the documents ``user`` may read, or say honestly why not.
    Persists both turns. ``user=None`` is an anonymous visitor of session ``session_key``.

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
            user=user,
            question=question,
            conversation_id=conversation_id,
            collection=collection,
            session_key=session_key,
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


def answer_prepare(  # type: ignore[no-untyped-def]
    *, user, question: str, conversation_id=None, collection=None, session_key: str = ""
) -> AskState:
    """Clean the question, load the conversation and its history, scope the search to the
    caller's collections, rewrite a follow-up."""
    started = time.perf_counter()
    question = _clean_question(question, user=user)
    conversation = (
        conversation_get_for_user(
            conversation_id=conversation_id, user=user, session_key=session_key
        )
        if conversation_id
        else None
    )
    collection_ids = collection_scope(user=user, collection=collection)
    history = (
        [
            Turn(role=m.role, text=m.text)
            for m in reversed(conversation.messages.order_by("-created_at", "-id")[:HISTORY_TURNS])
        ]
        if conversation
        else []
    )
    new_conversation_id = uuid.uuid4()
    prompt, prompt_chosen = prompt_choose(
        conversation_id=conversation.id if conversation else new_conversation_id,
        new=conversation is None,
    )
    user_id = user.pk if user is not None else ""
    log_context_update(
        user=user_id,
        conversation=conversation.id if conversation else "",
        prompt_version=f"{prompt.id}@{prompt.version}",
        prompt_hash=prompt.hash,
    )
    span_set(
        {"enduser.id": str(user_id)},
        conversation_id=str(conversation.id) if conversation else None,
        prompt_id=prompt.id,
        prompt_version=prompt.version,
        prompt_hash=prompt.hash,
        history_turns=len(history),
    )
    with span("ragapp.answer.rewrite"):
        query = query_rewrite(question, history)
        span_set(rewritten=query != question)
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
        session_key=session_key if user is None else "",
        new_conversation_id=new_conversation_id,
    )
    turn.trace["prompt"] = {
        "ref": f"{prompt.id}@{prompt.version}",
        "hash": prompt.hash,
        "chosen": prompt_chosen,
    }
    if query != question:
        turn.trace["rewritten_query"] = query
    return turn


def _start_turn(turn: AskState) -> bool:
    """Create the conversation (a first turn) and store the user's message, in one transaction
    (each commit waits for a disk flush). True when the conversation is new."""
    with transaction.atomic(savepoint=False):  # part of the caller's transaction when there is one
        new = turn.conversation is None
        if turn.conversation is None:
            turn.conversation = Conversation.objects.create(
                id=turn.new_conversation_id,
                user=turn.user,
                session_key=turn.session_key,
                title=turn.question[:80],
            )
        turn.user_message = Message.objects.create(
            conversation=turn.conversation,
            role=Message.Role.USER,
            text=turn.question,
            trace_id=current_trace_id(),
        )
    log_context_update(conversation=turn.conversation.id)
    span_set(conversation_id=str(turn.conversation.id))
    return new


def answer_from_cache(turn: AskState) -> AnswerOutcome | None:
    """Serve the question from the exact or semantic cache; a hit costs nothing."""
    with span("ragapp.answer.cache"):
        hit = cache_get_exact(turn.key)
        if hit is None and settings.RAGAPP_CACHE_SEMANTIC and not turn.key.context:
            # A first turn's query is its question: this one embedding also serves retrieval.
            with span("ragapp.answer.cache.embed"):
                turn.vector = embedder().embed_query(turn.query)
            hit = cache_get_semantic(turn.key, turn.vector)
        span_set(hit=hit.kind if hit else "miss")
    if hit is None:
        return None
    return _persist_cached(turn, hit)


def _persist_cached(turn: AskState, hit: CacheHit) -> AnswerOutcome:
    payload = hit.payload
    with transaction.atomic():
        # The answer is already stored (in the cache): this commit only logs the turn, so it does
        # not wait for the disk flush (10-20 ms here, most of a hit). A database crash within
        # the next ~0.6 s may lose this record of the turn; it never corrupts anything.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        new = _start_turn(turn)
        cache_hit_count(hit)
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
            trace_id=current_trace_id(),
            trace={
                **turn.trace,
                "cache": {"kind": hit.kind, "similarity": round(hit.similarity, 4)},
                "saved_usd": payload.get("cost_usd", 0.0),
            },
            latency_ms=int((time.perf_counter() - turn.started) * 1000),
        )
        if not new:
            turn.conversation.save(update_fields=["updated_at"])
        review_answer_saved(message=message, question=turn.user_message)  # type: ignore[arg-type]
    span_set(decision=message.decision, cache=hit.kind, message_id=message.id)
    logger.info(
        "answered from cache",
        extra={"cache": hit.kind, "ms": message.latency_ms, **_prompt_fields(turn.prompt)},
    )
    return AnswerOutcome(conversation=turn.conversation, message=message, usage=usage_summary([]))


def answer_retrieve(turn: AskState) -> None:
    """Check the budget, store the question, retrieve, route and fit the context budget."""
    budget_check(user=turn.user, conversation=turn.conversation)
    _start_turn(turn)
    started = time.perf_counter()
    turn.candidates = passages_retrieve(
        turn.query, collection_ids=turn.collection_ids, vector=turn.vector
    )
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
    passages = _fence_flagged(turn, passages)
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
    span_set(route=turn.route.route)
    count = (
        embedder().count_tokens if settings.RAGAPP_CONTEXT_TOKENIZER == "embedder" else chars_count
    )
    with span("ragapp.answer.prompt_build", prompt_version=turn.prompt.version):
        fitted = context_fit(
            fixed=turn.prompt.system + turn.prompt.user + turn.question,
            passages=passages,
            history=turn.history,
            window=settings.RAGAPP_CONTEXT_WINDOW_TOKENS,
            reserve=settings.RAGAPP_CONTEXT_RESERVE_TOKENS,
            count=count,
            verbatim_turns=settings.RAGAPP_HISTORY_VERBATIM_TURNS,
        )
        span_set(
            tokens=fitted.tokens,
            passages=len(fitted.passages),
            dropped_passages=fitted.dropped_passages,
            summarised_turns=fitted.summarised_turns,
        )
    turn.passages, turn.history = fitted.passages, fitted.history
    # What the reviewer sees: each retrieved passage's stage scores, and whether the model got it.
    sent = {p.chunk_id for p in turn.passages}
    turn.trace["passages"] = [
        {"chunk_id": c.chunk_id, "scores": c.scores, "sent": c.chunk_id in sent}
        for c in turn.candidates
    ]
    turn.trace["context"] = {
        "tokens": fitted.tokens,
        "tokenizer": settings.RAGAPP_CONTEXT_TOKENIZER,
        "dropped_passages": fitted.dropped_passages,
        "summarised_turns": fitted.summarised_turns,
    }


def passage_fence(text: str) -> tuple[str, list[Finding]]:
    """A flagged chunk's text as the model and the citation show it: every sentence the rules
    or the instruction classifier take for an instruction replaced (``passage_screen``)."""
    return passage_screen(text, classified=instructions_find([text])[0])


def _fence_flagged(turn: AskState, passages: list[Passage]) -> list[Passage]:
    """Chunks flagged at ingestion never reach the model as they are: excluded, or fenced with a
    warning and their instruction sentences removed (``RAGAPP_FLAGGED_CHUNKS``). Renumbered so
    the numbers the model cites stay 1..n."""
    flagged = set(
        Chunk.objects.filter(id__in=[p.chunk_id for p in passages], flagged=True).values_list(
            "id", flat=True
        )
    )
    if not flagged:
        return passages
    exclude = settings.RAGAPP_FLAGGED_CHUNKS == "exclude"
    kept: list[Passage] = []
    for passage in passages:
        if passage.chunk_id not in flagged:
            kept.append(replace(passage, number=len(kept) + 1))
            continue
        findings = []
        if not exclude:
            text, findings = passage_fence(passage.text)
            kept.append(replace(passage, number=len(kept) + 1, text=text, flagged=True))
        guardrail_record(
            stage="retrieval",
            rule="flagged_chunk",
            action="excluded" if exclude else "fenced",
            excerpt=f"chunk {passage.chunk_id}: " + "; ".join(f.excerpt for f in findings)[:250],
            user=turn.user,
            conversation=turn.conversation,
        )
    kept_ids = {p.chunk_id for p in kept}
    turn.candidates = [c for c in turn.candidates if c.chunk_id in kept_ids]
    return kept


def answer_finish(
    turn: AskState,
    *,
    result: ChatResult | None,
    attempts: list[Attempt],
    degraded: bool,
    partial: bool = False,
    batch: bool = False,
) -> AnswerOutcome:
    """Validate, gate, compose and persist the answer with its usage (``batch``: the calls went
    through the batch lane: route "batch", batch price)."""
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
            "flagged": p.flagged,  # text is the stored chunk with its instruction sentences removed
            "scores": by_chunk[p.chunk_id].scores,
        }
        for label, p in cited
    ]
    latency_ms = int((time.perf_counter() - turn.started) * 1000)
    turn.trace["overhead_ms"] = round(latency_ms - turn.trace.get("provider_ms", 0), 1)
    route = "batch" if batch else f"answer.{turn.route_name}" if turn.route_name else "answer"
    with transaction.atomic():
        records = usage_record(
            attempts,
            route=route,
            prompt=turn.prompt,
            conversation=conversation,
            user=user,
            batch=batch,
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
            trace_id=current_trace_id(),
            latency_ms=latency_ms,
        )
        conversation.save(update_fields=["updated_at"])
        review_answer_saved(message=message, question=turn.user_message)  # type: ignore[arg-type]
        usage = usage_summary(records)
        if decision == "answered" and not (degraded or partial):  # in the same commit
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
    span_set(
        decision=decision,
        confidence=confidence,
        degraded=degraded or partial,
        partial=partial,
        message_id=message.id,
        cost_usd=usage["cost_usd"],
    )
    logger.info(
        "answered",
        extra={
            "decision": decision,
            "conversation": str(conversation.id),
            "ms": latency_ms,
            "degraded": degraded,
            "route": turn.route_name,
            **_prompt_fields(turn.prompt),
        },
    )
    return AnswerOutcome(conversation=conversation, message=message, usage=usage)


def _prompt_fields(prompt: Prompt) -> dict[str, str]:
    # prompt_version as "<id>@<version>", the form every other log line carries (observability)
    return {
        "prompt_id": prompt.id,
        "prompt_version": f"{prompt.id}@{prompt.version}",
        "prompt_hash": prompt.hash,
    }


@dataclass(frozen=True)
class GuardedClaim:
    """What the output guards left of one claim: ``claim`` is None when it was dropped;
    ``leaked`` means it leaks the prompt, and the whole answer is refused."""

    claim: ClaimOut | None
    leaked: bool = False


def claim_guard(turn: AskState, claim: ClaimOut, *, record: bool = True) -> GuardedClaim:
    """The output guards on one claim: a prompt leak refuses the answer; a claim that is a
    question or a task for a chatbot (an injected instruction restated) is dropped, and the gate
    decides from the claims left; otherwise every image and each link outside the allow-list is
    neutralised. ``record=False`` checks without logging (the stream shows claims the final
    check logs)."""
    leak = leaks_prompt(claim.text, system_prompt=turn.prompt.system, canary=turn.canary)
    text, findings = neutralize_links(
        claim.text, allowed_hosts=frozenset(settings.RAGAPP_LINK_ALLOWED_HOSTS)
    )
    task = None if leak else _claim_task(turn, text)  # judged as the user would read it
    if leak:
        events = [(leak.rule, "blocked", leak.excerpt)]
    elif task:
        events = [(task.rule, "removed", task.excerpt)]
    else:
        events = [(f.rule, "removed", f.excerpt) for f in findings]
    if record:
        for rule, action, excerpt in events:
            guardrail_record(
                stage="output",
                rule=rule,
                action=action,
                excerpt=excerpt,
                user=turn.user,
                conversation=turn.conversation,
            )
    if leak or task:
        return GuardedClaim(None, leaked=bool(leak))
    return GuardedClaim(claim.model_copy(update={"text": text}))


def _claim_task(turn: AskState, text: str) -> Finding | None:
    relevance = None
    # Only a claim phrased to somebody is held to the question; MiniLM's similarities across
    # languages mean little.
    if addressed(text) and english(turn.query):
        emb = embedder()
        if turn.vector is None:
            turn.vector = emb.embed_query(turn.query)
        relevance = float(emb.embed_sentences([text])[0] @ turn.vector)  # type: ignore[attr-defined]
    return claim_task(
        text,
        classified=instruction_reasons([text])[0],
        relevance=relevance,
        min_relevance=settings.RAGAPP_TASK_CLAIM_MIN_RELEVANCE,
    )


@traced("ragapp.answer.output_guard")
def _guard_output(turn: AskState, result: ChatResult) -> ChatResult | None:
    claims = []
    for claim in result.answer.claims:
        guarded = claim_guard(turn, claim)
        if guarded.leaked:
            return None
        if guarded.claim is not None:
            claims.append(guarded.claim)
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
    with span("ragapp.answer.validate", claims=len(result.answer.claims)):
        validated = citations_validate(
            result.answer,
            passages=turn.passages,
            embed=embedder().embed_sentences,  # type: ignore[attr-defined]
            support_min=settings.RAGAPP_SUPPORT_MIN,
        )
        span_set(kept=len(validated.claims), removed=len(validated.removed))
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
    turn.trace["citation_failures"] = len(validated.removed)  # compared per prompt version
    confidence = result.answer.confidence
    with span("ragapp.answer.gate", confidence=confidence):
        decision = gate_decide(
            model_decision=result.answer.decision,
            confidence=confidence,
            has_claims=bool(validated.claims),
            answer_at=settings.RAGAPP_GATE_ANSWER,
            escalate_at=settings.RAGAPP_GATE_ESCALATE,
            unsupported_share=validated.unsupported_share,
            max_unsupported=settings.RAGAPP_SUPPORT_MAX_REMOVED,
        )
        span_set(decision=decision, unsupported_share=validated.unsupported_share)
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
