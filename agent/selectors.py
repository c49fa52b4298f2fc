from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Aggregate, Count, FloatField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from agent.models import (
    Conversation,
    Feedback,
    GuardrailEvent,
    Message,
    PromptLabel,
    ReviewItem,
    UsageRecord,
)
from agent.pipeline.prompt import VersionStats
from ingestion.models import Chunk

ROLLUP_FIELDS = {
    "conversation": "conversation_id",
    "user": "user__username",
    "route": "route",
    "model": "model",
    "day": "day",
}


def conversation_list(*, user, session_key: str = "") -> QuerySet[Conversation]:  # type: ignore[no-untyped-def]
    """The user's latest conversations (``user=None``: the anonymous session's)."""
    if user is None:
        if not session_key:
            return Conversation.objects.none()
        return Conversation.objects.filter(user=None, session_key=session_key)[:100]
    return Conversation.objects.filter(user=user).order_by("-updated_at")[:100]


def usage_rollup(*, by: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and cost grouped by ``conversation``, ``user``, ``route``, ``model`` or
    ``day``; most expensive first."""
    field = ROLLUP_FIELDS[by]
    qs = UsageRecord.objects.all()
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if by == "day":
        qs = qs.annotate(day=TruncDate("created_at"))
    rows = (
        qs.values(field)
        .annotate(
            calls=Count("id"),
            failed=Count("id", filter=Q(succeeded=False)),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
            cost_usd=Coalesce(Sum("cost_usd"), Decimal(0)),
        )
        .order_by("-cost_usd", field)
    )
    return [
        {
            by: str(row[field]) if row[field] is not None else None,
            "calls": row["calls"],
            "failed": row["failed"],
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "cost_usd": float(row["cost_usd"]),
        }
        for row in rows
    ]


def guardrail_counts_per_day(events: QuerySet[GuardrailEvent], *, days: int = 14) -> dict[str, Any]:
    """Events per rule per day for the latest ``days`` days that have any: ``{"days": [newest
    first], "rows": [{"rule", "counts" (one per day), "total"}]}``, busiest rule first."""
    counts = (
        events.order_by()
        .annotate(day=TruncDate("created_at"))
        .values("rule", "day")
        .annotate(n=Count("id"))
    )
    by_rule: dict[str, dict[Any, int]] = {}
    for row in counts:
        by_rule.setdefault(row["rule"], {})[row["day"]] = row["n"]
    shown = sorted({day for per_day in by_rule.values() for day in per_day}, reverse=True)[:days]
    rows = [
        {"rule": rule, "counts": [per_day.get(d, 0) for d in shown], "total": sum(per_day.values())}
        for rule, per_day in by_rule.items()
    ]
    rows.sort(key=lambda r: (-r["total"], r["rule"]))
    return {"days": shown, "rows": rows}


# --- prompt versions: labels and the canary comparison --------------------------------------------


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


@dataclass(frozen=True)
class LiveVersions:
    """What answers use now: production's version and the canary's (when it gets traffic)."""

    prompt_id: str
    production: str
    production_source: str  # "label" or "setting" (RAGAPP_PROMPT, no production label yet)
    canary: str | None = None
    canary_percent: int = 0


@dataclass(frozen=True)
class PromptComparison:
    prompt_id: str
    since: datetime
    live: LiveVersions
    production: VersionStats
    canary: VersionStats | None


def prompt_default_id() -> str:
    return str(settings.RAGAPP_PROMPT).partition("@")[0]


def prompt_live_versions(*, prompt_id: str | None = None) -> LiveVersions:
    """Production's version (its label, else ``RAGAPP_PROMPT``) and a live canary: one with a
    percentage above 0 and a version other than production's."""
    prompt_id = prompt_id or prompt_default_id()
    labels = {label.name: label for label in PromptLabel.objects.filter(prompt_id=prompt_id)}
    production = labels.get(PromptLabel.Name.PRODUCTION)
    setting_id, _, setting_version = str(settings.RAGAPP_PROMPT).partition("@")
    if production is not None:
        version, source = production.version, "label"
    elif setting_id == prompt_id:
        version, source = setting_version, "setting"
    else:
        raise LookupError(f"prompt {prompt_id!r} has no production label")
    canary = labels.get(PromptLabel.Name.CANARY)
    if canary is None or canary.percent == 0 or canary.version == version:
        return LiveVersions(prompt_id=prompt_id, production=version, production_source=source)
    return LiveVersions(
        prompt_id=prompt_id,
        production=version,
        production_source=source,
        canary=canary.version,
        canary_percent=canary.percent,
    )


def prompt_pinned_version(*, conversation_id: Any, prompt_id: str) -> str | None:
    """The version a conversation's first answer used: later turns keep it while it is live."""
    return (
        Message.objects.filter(
            conversation_id=conversation_id, role=Message.Role.ASSISTANT, prompt_id=prompt_id
        )
        .order_by("created_at", "id")
        .values_list("prompt_version", flat=True)
        .first()
    )


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def prompt_version_stats(*, prompt_id: str, version: str, since: datetime) -> VersionStats:
    """Answers, thumbs, refusals, escalations, citation failures (answers that had a claim
    removed by the citation validator), cost per answer and latency of one version since
    ``since``. Thumbs rates are shares of all answers, so arms that are rated alike compare."""
    answers = Message.objects.filter(
        role=Message.Role.ASSISTANT,
        prompt_id=prompt_id,
        prompt_version=version,
        created_at__gte=since,
    )
    row = answers.aggregate(
        n=Count("id"),
        refused=Count("id", filter=Q(decision=Message.Decision.REFUSED)),
        escalated=Count("id", filter=Q(decision=Message.Decision.ESCALATED)),
        citation_failures=Count("id", filter=Q(trace__citation_failures__gt=0)),
        p50=Percentile("latency_ms", 0.5),
        p95=Percentile("latency_ms", 0.95),
    )
    thumbs = Feedback.objects.filter(message__in=answers).aggregate(
        rated=Count("message", distinct=True),
        up=Count("id", filter=Q(rating=1)),
        down=Count("id", filter=Q(rating=-1)),
    )
    cost = UsageRecord.objects.filter(
        prompt_id=prompt_id, prompt_version=version, created_at__gte=since
    ).aggregate(total=Coalesce(Sum("cost_usd"), Decimal(0)))["total"]
    n = row["n"]
    return VersionStats(
        version=version,
        answers=n,
        rated=thumbs["rated"],
        thumbs_up_rate=_rate(thumbs["up"], n),
        thumbs_down_rate=_rate(thumbs["down"], n),
        refusal_rate=_rate(row["refused"], n),
        escalation_rate=_rate(row["escalated"], n),
        citation_failure_rate=_rate(row["citation_failures"], n),
        cost_per_answer_usd=float(cost) / n if n else 0.0,
        latency_p50_ms=row["p50"],
        latency_p95_ms=row["p95"],
    )


def prompt_compare(
    *, prompt_id: str | None = None, since: datetime | None = None
) -> PromptComparison:
    """Production's version against the live canary's over the window (default: the last
    ``RAGAPP_CANARY_WINDOW_H`` hours); ``canary`` is None when no canary gets traffic."""
    live = prompt_live_versions(prompt_id=prompt_id)
    since = since or timezone.now() - timedelta(hours=settings.RAGAPP_CANARY_WINDOW_H)
    return PromptComparison(
        prompt_id=live.prompt_id,
        since=since,
        live=live,
        production=prompt_version_stats(
            prompt_id=live.prompt_id, version=live.production, since=since
        ),
        canary=prompt_version_stats(prompt_id=live.prompt_id, version=live.canary, since=since)
        if live.canary
        else None,
    )


# --- The review queue -----------------------------------------------------------------------------


def review_item_list(*, reason: str = "", status: str = "") -> QuerySet[ReviewItem]:
    """The queue, newest first, filtered by reason and status; each item with its ``question``."""
    asked = (
        Message.objects.filter(
            conversation_id=OuterRef("message__conversation_id"),
            role=Message.Role.USER,
            id__lt=OuterRef("message_id"),
        )
        .order_by("-id")
        .values("text")[:1]
    )
    items = ReviewItem.objects.select_related("message", "reviewer").annotate(
        question=Subquery(asked)
    )
    if reason:
        items = items.filter(reasons__contains=[reason])
    if status:
        items = items.filter(status=status)
    return items.order_by("-created_at", "-id")


def review_item_get(*, item_id: int) -> ReviewItem | None:
    return (
        ReviewItem.objects.select_related("message__conversation__user", "reviewer", "reply")
        .filter(id=item_id)
        .first()
    )


@dataclass(frozen=True)
class RetrievedPassage:
    rank: int
    chunk_id: int
    document_title: str
    document_name: str
    heading: str
    page: int | None
    text: str  # empty when the chunk is no longer stored (the document was re-ingested)
    scores: dict[str, float]
    sent: bool  # given to the model (the context budget may drop the last ones)
    cited: int | None  # the citation number in the answer


@dataclass(frozen=True)
class ReviewDetail:
    item: ReviewItem
    question: Message | None
    answer: Message
    passages: list[RetrievedPassage]
    feedback: list[Feedback]
    guardrails: list[GuardrailEvent]
    trace_id: str  # set once answers carry a trace id; links to the trace page


def review_item_detail(item: ReviewItem) -> ReviewDetail:
    """What a reviewer needs beside the answer: the question, the retrieved passages with each
    stage's score, the feedback and the guardrail events of the turn."""
    answer = item.message
    question = (
        Message.objects.filter(
            conversation_id=answer.conversation_id, role=Message.Role.USER, id__lt=answer.id
        )
        .order_by("-id")
        .first()
    )
    cited = {c["chunk_id"]: c["number"] for c in answer.citations}
    # Answers stored before the trace kept the retrieved passages show their citations only.
    retrieved = answer.trace.get("passages") or [
        {"chunk_id": c["chunk_id"], "scores": c.get("scores", {}), "sent": True}
        for c in answer.citations
    ]
    chunks = Chunk.objects.select_related("document").in_bulk([p["chunk_id"] for p in retrieved])
    passages = []
    for rank, p in enumerate(retrieved, start=1):
        chunk = chunks.get(p["chunk_id"])
        passages.append(
            RetrievedPassage(
                rank=rank,
                chunk_id=p["chunk_id"],
                document_title=chunk.document.title if chunk else "",
                document_name=chunk.document.original_name if chunk else "",
                heading=chunk.heading if chunk else "",
                page=chunk.page if chunk else None,
                text=chunk.text if chunk else "",
                scores=p["scores"],
                sent=p["sent"],
                cited=cited.get(p["chunk_id"]),
            )
        )
    guardrails = GuardrailEvent.objects.filter(conversation_id=answer.conversation_id)
    if question is not None:
        guardrails = guardrails.filter(
            created_at__gte=question.created_at, created_at__lte=answer.created_at
        )
    return ReviewDetail(
        item=item,
        question=question,
        answer=answer,
        passages=passages,
        feedback=list(answer.feedback.select_related("user")),
        guardrails=list(guardrails.order_by("created_at")),
        trace_id=str(getattr(answer, "trace_id", "") or ""),
    )
