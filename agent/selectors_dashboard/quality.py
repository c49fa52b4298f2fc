"""Quality reads: outcomes, feedback, citation failures and answer length, by day and by prompt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Avg, CharField, Count, F, Q, Value
from django.db.models.functions import Concat, Length, TruncDate

from agent.models import Feedback, GuardrailEvent, Message
from agent.selectors_dashboard.common import answers, by_day, day_range, share

# Claims the citation check removed: a citation to a passage not retrieved, or not supporting it.
CITATION_RULES = ("invalid_citation", "unsupported_claim")

_OUTCOMES = {
    "answers": Count("id"),
    "answered": Count("id", filter=Q(decision=Message.Decision.ANSWERED)),
    "escalated": Count("id", filter=Q(decision=Message.Decision.ESCALATED)),
    "refused": Count("id", filter=Q(decision=Message.Decision.REFUSED)),
    "degraded": Count("id", filter=Q(degraded=True)),
    "answer_chars": Avg(Length("text"), filter=Q(decision=Message.Decision.ANSWERED)),
    # answers that lost a claim to the citation validator (recorded in their trace)
    "citation_failed_answers": Count("id", filter=Q(trace__citation_failures__gt=0)),
}
_FEEDBACK = {
    "thumbs_up": Count("id", filter=Q(rating=1)),
    "thumbs_down": Count("id", filter=Q(rating=-1)),
}


def _with_rates(row: dict[str, Any]) -> dict[str, Any]:
    rated = row.get("thumbs_up", 0) + row.get("thumbs_down", 0)
    return {
        **row,
        "thumbs_up_rate": share(row.get("thumbs_up", 0), rated),
        "escalation_rate": share(row["escalated"], row["answers"]),
        "refusal_rate": share(row["refused"], row["answers"]),
    }


def quality_daily(*, since: datetime) -> list[dict[str, Any]]:
    """Per day of the answer: outcomes and their rates, mean answered length in characters,
    thumbs up/down on that day's answers, and claims the citation check removed."""
    outcomes = (
        answers(since=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(**_OUTCOMES)
    )
    feedback = (
        Feedback.objects.filter(
            message__role=Message.Role.ASSISTANT, message__created_at__gte=since
        )
        .annotate(day=TruncDate("message__created_at"))
        .values("day")
        .annotate(**_FEEDBACK)
    )
    removed = (
        GuardrailEvent.objects.filter(
            rule__in=CITATION_RULES, action="removed", created_at__gte=since
        )
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(citation_failures=Count("id"))
    )
    days = day_range(since)
    zero = dict.fromkeys(_OUTCOMES, 0) | {"answer_chars": None}
    merged = by_day(outcomes, days, **zero)
    fb = {row["day"]: row for row in feedback}
    rm = {row["day"]: row["citation_failures"] for row in removed}
    return [
        _with_rates(
            {
                **row,
                "thumbs_up": fb.get(row["day"], {}).get("thumbs_up", 0),
                "thumbs_down": fb.get(row["day"], {}).get("thumbs_down", 0),
                "citation_failures": rm.get(row["day"], 0),
            }
        )
        for row in merged
    ]


def quality_by_prompt(*, since: datetime) -> list[dict[str, Any]]:
    """The same outcomes and feedback per prompt (``id@version``), most used first."""
    prompt = Concat(F("prompt_id"), Value("@"), F("prompt_version"), output_field=CharField())
    outcomes = (
        answers(since=since)
        .exclude(prompt_id="")
        .annotate(prompt=prompt)
        .values("prompt")
        .annotate(**_OUTCOMES)
        .order_by("-answers", "prompt")
    )
    feedback = {
        row["prompt"]: row
        for row in Feedback.objects.filter(
            message__role=Message.Role.ASSISTANT, message__created_at__gte=since
        )
        .annotate(
            prompt=Concat(
                F("message__prompt_id"),
                Value("@"),
                F("message__prompt_version"),
                output_field=CharField(),
            )
        )
        .values("prompt")
        .annotate(**_FEEDBACK)
    }
    return [
        _with_rates(
            {
                **row,
                "thumbs_up": feedback.get(row["prompt"], {}).get("thumbs_up", 0),
                "thumbs_down": feedback.get(row["prompt"], {}).get("thumbs_down", 0),
            }
        )
        for row in outcomes
    ]
