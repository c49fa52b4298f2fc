"""The human review loop: answers enter the queue when something says a person should look
(escalated, thumbs-down, a guardrail fired, a random sample), a reviewer judges them, writes the
corrected answer (posted to the user's conversation) and promotes the pair to the eval set."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent.models import Feedback, GuardrailEvent, Message, ReviewItem
from agent.pipeline.guards import redact_pii
from evals.cases import EXPECTATIONS, GoldenSetError, case_parse
from evals.corpus import sample_files
from evals.graders import contains
from ingestion.models import Chunk
from ragapp.errors import InvalidInput

logger = logging.getLogger(__name__)

REVIEWED_FILE = "reviewed.jsonl"
REVIEWED_CATEGORY = "reviewed"
HISTORY_QUESTIONS = 3  # earlier questions kept with a promoted follow-up


def review_sampled(message_id: int, *, rate: float) -> bool:
    """Whether an answer falls in the random sample: a hash of its id, so the choice is the same
    in every process and a test can predict it."""
    digest = hashlib.sha256(f"review-sample:{message_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def review_item_flag(*, message: Message, reasons: list[str]) -> ReviewItem:
    """Put ``message`` in the queue for ``reasons``, or add them to its item (one per message).

    A new reason reopens an item already reviewed: something new happened to that answer.
    """
    with transaction.atomic():
        item, created = ReviewItem.objects.get_or_create(
            message=message, defaults={"reasons": sorted(set(reasons))}
        )
        if created:
            return item
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        merged = sorted(set(item.reasons) | set(reasons))
        if merged != item.reasons:
            item.reasons = merged
            item.status = ReviewItem.Status.OPEN
            item.save(update_fields=["reasons", "status", "updated_at"])
    return item


def review_answer_saved(*, message: Message, question: Message) -> ReviewItem | None:
    """Queue a just-saved answer when it was escalated, when a guardrail fired during its turn
    (since ``question`` was stored), or when it falls in the random sample of answered ones."""
    reasons = []
    if message.decision == Message.Decision.ESCALATED:
        reasons.append(ReviewItem.Reason.ESCALATED)
    if GuardrailEvent.objects.filter(
        conversation_id=message.conversation_id, created_at__gte=question.created_at
    ).exists():
        reasons.append(ReviewItem.Reason.GUARDRAIL)
    if message.decision == Message.Decision.ANSWERED and review_sampled(
        message.id, rate=settings.RAGAPP_REVIEW_SAMPLE_RATE
    ):
        reasons.append(ReviewItem.Reason.SAMPLE)
    return review_item_flag(message=message, reasons=reasons) if reasons else None


def review_feedback_given(feedback: Feedback) -> ReviewItem | None:
    """A thumbs-down puts the answer in the queue."""
    if feedback.rating >= 0:
        return None
    return review_item_flag(message=feedback.message, reasons=[ReviewItem.Reason.THUMBS_DOWN])


def review_item_resolve(
    *, item: ReviewItem, reviewer: Any, verdict: str, corrected_answer: str = ""
) -> ReviewItem:
    """Record the reviewer's verdict and close the item. A corrected answer is posted to the
    user's conversation as a message from a person (edited in place when written again)."""
    if verdict not in ReviewItem.Verdict.values:
        raise InvalidInput(f"verdict must be one of {', '.join(ReviewItem.Verdict.values)}.")
    corrected_answer = corrected_answer.strip()
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().select_related("message").get(pk=item.pk)
        item.verdict = verdict
        item.reviewer = reviewer
        item.status = ReviewItem.Status.DONE
        item.reviewed_at = timezone.now()
        if corrected_answer and corrected_answer != item.corrected_answer:
            item.corrected_answer = corrected_answer
            item.reply = _reply_post(item, corrected_answer)
        item.save()
    logger.info("answer reviewed", extra={"review_item": item.id, "verdict": verdict})
    return item


def _reply_post(item: ReviewItem, text: str) -> Message:
    conversation = item.message.conversation
    if item.reply is not None:
        reply = item.reply
        reply.text = text
        reply.save(update_fields=["text"])
    else:
        reply = Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, text=text, from_reviewer=True
        )
    conversation.save(update_fields=["updated_at"])  # the conversation moves to the top
    return reply


def review_item_promote(
    *,
    item: ReviewItem,
    expect: str,
    question: str = "",
    source: str = "",
    evidence: str = "",
    facts: list[str] | None = None,
) -> ReviewItem:
    """Write the item's question (or the reviewer's edit of it) as a golden-set case to
    ``reviewed.jsonl`` in ``RAGAPP_EVAL_CASES_DIR`` and record it on the item. The case is checked
    like every other (``evals.cases``); an answerable one must name a document of the eval corpus
    (the sample knowledge base) and an evidence phrase one of its stored passages contains.
    Personal data (e-mail addresses, phone and card numbers) is redacted: the file is committed."""
    if item.promoted_case:
        raise InvalidInput(f"Already promoted as {item.promoted_case_id}.", code="already_promoted")
    if expect not in EXPECTATIONS or expect == "any":
        raise InvalidInput("expect must be answered, refused or declined.")
    source, evidence = source.strip(), " ".join(evidence.split())
    facts = [f.strip() for f in facts or [] if f.strip()]
    if expect == "answered":
        _evidence_check(source=source, evidence=evidence)
    asked, history = _question_of(item.message)
    case: dict[str, Any] = {
        "id": f"reviewed-{uuid.uuid4().hex[:10]}",
        "question": redact_pii(question.strip() or asked)[0],
        "expect": expect,
    }
    if history:
        case["history"] = [redact_pii(h)[0] for h in history]
    if expect == "answered":
        case.update(source=source, evidence=evidence)
        if facts:
            case["facts"] = facts
    case["notes"] = redact_pii(
        f"review item {item.id}"
        + (f"; corrected answer: {item.corrected_answer}" if item.corrected_answer else "")
    )[0]
    try:
        case_parse(case, category=REVIEWED_CATEGORY, where="promoted case")
    except GoldenSetError as exc:
        raise InvalidInput(str(exc).removeprefix("promoted case: ")) from exc
    with transaction.atomic():
        item = ReviewItem.objects.select_for_update().get(pk=item.pk)
        if item.promoted_case:
            raise InvalidInput(
                f"Already promoted as {item.promoted_case_id}.", code="already_promoted"
            )
        item.promoted_case = case
        item.save(update_fields=["promoted_case", "updated_at"])
        eval_cases_append([case])
    logger.info("case promoted", extra={"review_item": item.id, "case": case["id"]})
    return item


def _question_of(message: Message) -> tuple[str, list[str]]:
    asked = list(
        Message.objects.filter(
            conversation_id=message.conversation_id, role=Message.Role.USER, id__lt=message.id
        )
        .order_by("-id")
        .values_list("text", flat=True)[: HISTORY_QUESTIONS + 1]
    )
    if not asked:
        raise InvalidInput("This answer has no question to promote.")
    return asked[0], list(reversed(asked[1:]))


def _evidence_check(*, source: str, evidence: str) -> None:
    corpus = {p.name for p in sample_files()}
    if source not in corpus:
        raise InvalidInput(
            "The expected document must be one of the eval corpus (the sample knowledge base): "
            + ", ".join(sorted(corpus)),
            code="source_not_in_corpus",
        )
    if not evidence:
        raise InvalidInput("An answerable case needs an evidence phrase.")
    texts = Chunk.objects.filter(document__original_name=source).values_list("text", flat=True)
    if not any(contains(text, evidence) for text in texts.iterator()):
        raise InvalidInput(
            f"No stored passage of {source} contains the evidence phrase.",
            code="evidence_not_found",
        )


def eval_cases_append(cases: list[dict[str, Any]], *, folder: Path | None = None) -> int:
    """Append the cases whose id is not yet in ``reviewed.jsonl`` (created with its header);
    returns how many were written. A file lock keeps concurrent promotions from interleaving."""
    path = Path(folder or settings.RAGAPP_EVAL_CASES_DIR) / REVIEWED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        lines = [line for line in fh.read().splitlines() if line.strip()]
        known = {json.loads(line).get("id") for line in lines[1:]}
        new = [c for c in cases if c["id"] not in known]
        if not lines:
            fh.write(json.dumps({"category": REVIEWED_CATEGORY, "version": 1}) + "\n")
        for case in new:
            fh.write(json.dumps(case, ensure_ascii=False) + "\n")
    return len(new)
