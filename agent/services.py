"""Answering: guard the question, retrieve, generate through the fallback chain, validate, gate,
and persist the answer with its citations, usage, cost and prompt version."""

from __future__ import annotations

import logging
import time
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from agent.models import Conversation, GuardrailEvent, Message, UsageRecord
from agent.pipeline.compose import ESCALATION, answer_compose, refusal_text
from agent.pipeline.gate import gate_decide
from agent.pipeline.prompt import prompt_load
from agent.pipeline.validate import citations_validate
from agent.providers.protocols import Attempt, ChatRequest, ChatResult, Passage, Turn
from agent.providers.registry import chat_models
from ingestion.models import Collection, Document
from ragapp.errors import InvalidInput, NotFound, ProviderError
from retrieval.services import passages_retrieve

logger = logging.getLogger(__name__)

HISTORY_TURNS = 6


@dataclass(frozen=True)
class AnswerOutcome:
    conversation: Conversation
    message: Message
    usage: dict  # type: ignore[type-arg]


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
    return cleaned


def conversation_get_for_user(*, conversation_id, user) -> Conversation:  # type: ignore[no-untyped-def]
    """The user's conversation; another user's answers exactly like a missing one."""
    conversation = Conversation.objects.filter(id=conversation_id, user=user).first()
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def cost_usd(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price = settings.RAG_PRICES.get(model)
    if price is None:
        logger.warning("no price for model; cost recorded as 0", extra={"model": model})
        return Decimal(0)
    total = (input_tokens * price["input"] + output_tokens * price["output"]) / 1_000_000
    return Decimal(str(round(total, 6)))


def _record_attempts(attempts: list[Attempt], *, prompt, conversation, user) -> list[UsageRecord]:  # type: ignore[no-untyped-def]
    return UsageRecord.objects.bulk_create(
        UsageRecord(
            provider=a.provider,
            model=a.model,
            route="answer",
            input_tokens=a.usage.input_tokens,
            output_tokens=a.usage.output_tokens,
            tokens_estimated=a.usage.estimated,
            cost_usd=cost_usd(a.model, a.usage.input_tokens, a.usage.output_tokens),
            latency_ms=a.latency_ms,
            succeeded=not a.error_code,
            error_code=a.error_code,
            prompt_id=prompt.id,
            prompt_version=prompt.version,
            conversation=conversation,
            user=user,
        )
        for a in attempts
    )


def _generate(request: ChatRequest) -> tuple[ChatResult | None, list[Attempt], bool]:
    """Try each model of the fallback chain; returns (result, all attempts, degraded)."""
    attempts: list[Attempt] = []
    for position, model in enumerate(chat_models()):
        try:
            result = model.generate(request)
        except ProviderError as exc:
            attempts.extend(exc.extra.get("attempts", []))
            logger.warning(
                "chat model failed; falling back",
                extra={"provider": model.provider, "code": exc.code},
            )
            continue
        attempts.extend(result.attempts)
        return result, attempts, position > 0
    return None, attempts, True


def _topics(collection_ids: list[int] | None) -> list[str]:
    qs = Document.objects.filter(status=Document.Status.READY)
    if collection_ids is not None:
        qs = qs.filter(collection_id__in=collection_ids)
    return list(qs.order_by("title").values_list("title", flat=True).distinct()[:8])


def answer_question(
    *,
    user,
    question: str,
    conversation_id=None,
    collection: str | None = None,  # type: ignore[no-untyped-def]
) -> AnswerOutcome:
    """Answer ``question`` from the documents, or say honestly why not. Persists both turns."""
    started = time.perf_counter()
    question = _clean_question(question, user=user)
    if conversation_id:
        conversation = conversation_get_for_user(conversation_id=conversation_id, user=user)
    else:
        conversation = Conversation.objects.create(user=user, title=question[:80])
    collection_ids = None
    if collection:
        found = Collection.objects.filter(slug=collection).values_list("id", flat=True).first()
        if found is None:
            raise NotFound("No such collection.")
        collection_ids = [found]
    history = [
        Turn(role=m.role, text=m.text)
        for m in reversed(conversation.messages.order_by("-created_at", "-id")[:HISTORY_TURNS])
    ]
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, text=question
    )
    prompt = prompt_load(settings.RAGAPP_PROMPT)

    candidates = passages_retrieve(question, collection_ids=collection_ids)
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
        for i, c in enumerate(candidates, start=1)
    ]
    result, attempts, degraded = (None, [], False)
    if passages:
        request = ChatRequest(
            question=question,
            passages=passages,
            prompt=prompt,
            history=history,
            idempotency_key=f"msg-{user_message.id}",
        )
        result, attempts, degraded = _generate(request)

    decision, text, cited, confidence = "refused", "", [], 0.0
    if not passages:
        guardrail_record(
            stage="retrieval",
            rule="no_evidence",
            action="refused",
            excerpt=question,
            user=user,
            conversation=conversation,
        )
    elif result is None:
        decision, text = "escalated", ESCALATION  # every model failed: a person takes over
    else:
        validated = citations_validate(result.answer, passage_numbers={p.number for p in passages})
        for claim, reason in validated.removed:
            guardrail_record(
                stage="output",
                rule="invalid_citation",
                action="removed",
                excerpt=f"{reason}: {claim.text}",
                user=user,
                conversation=conversation,
            )
        confidence = result.answer.confidence
        decision = gate_decide(
            model_decision=result.answer.decision,
            confidence=confidence,
            has_claims=bool(validated.claims),
            answer_at=settings.RAGAPP_GATE_ANSWER,
            escalate_at=settings.RAGAPP_GATE_ESCALATE,
        )
        if decision == "refused":
            guardrail_record(
                stage="output",
                rule="no_evidence",
                action="refused",
                excerpt=question,
                score=confidence,
                user=user,
                conversation=conversation,
            )
        elif validated.claims:
            composed = answer_compose(validated.claims, passages)
            cited = composed.cited
            text = composed.text if decision == "answered" else f"{ESCALATION} {composed.text}"
        else:
            text = ESCALATION
    if decision == "refused":
        text, cited = refusal_text(_topics(collection_ids)), []

    by_chunk = {c.chunk_id: c for c in candidates}
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
    with transaction.atomic():
        records = _record_attempts(attempts, prompt=prompt, conversation=conversation, user=user)
        message = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=text,
            decision=decision,
            confidence=confidence,
            citations=citations,
            prompt_id=prompt.id,
            prompt_version=prompt.version,
            prompt_hash=prompt.hash,
            provider=result.provider if result else "",
            model=result.model if result else "",
            degraded=degraded,
            latency_ms=int((time.perf_counter() - started) * 1000),
        )
        conversation.save(update_fields=["updated_at"])
    usage = {
        "calls": len(records),
        "input_tokens": sum(r.input_tokens for r in records),
        "output_tokens": sum(r.output_tokens for r in records),
        "cost_usd": float(sum((r.cost_usd for r in records), Decimal(0))),
        "estimated": any(r.tokens_estimated for r in records),
    }
    logger.info(
        "answered",
        extra={
            "decision": decision,
            "conversation": str(conversation.id),
            "ms": message.latency_ms,
            "degraded": degraded,
        },
    )
    return AnswerOutcome(conversation=conversation, message=message, usage=usage)


def feedback_give(*, user, message_id: int, rating: int, comment: str = ""):  # type: ignore[no-untyped-def]
    """Thumbs up/down on an answer in one of the user's own conversations (one per user)."""
    from agent.models import Feedback

    message = Message.objects.filter(
        id=message_id, role=Message.Role.ASSISTANT, conversation__user=user
    ).first()
    if message is None:
        raise NotFound("No such answer.")
    feedback, _ = Feedback.objects.update_or_create(
        message=message, user=user, defaults={"rating": rating, "comment": comment}
    )
    return feedback
