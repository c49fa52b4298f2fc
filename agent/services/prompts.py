"""Prompt versions in use: moving labels, choosing a conversation's version (production, or the
canary for a sticky share of conversations) and rolling a worse canary back automatically."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from agent.models import PromptLabel, PromptLabelMove
from agent.pipeline.prompt import CanaryLimits, canary_bucket, canary_regressions, prompt_load
from agent.providers.protocols import Prompt
from agent.selectors import (
    PromptComparison,
    prompt_compare,
    prompt_default_id,
    prompt_live_versions,
    prompt_pinned_version,
)
from agent.services.alerts import alert_raise
from ragapp.errors import InvalidInput

logger = logging.getLogger(__name__)


def prompt_label_move(
    *,
    prompt_id: str,
    name: str,
    version: str,
    percent: int = 0,
    user: Any = None,
    reason: str,
) -> PromptLabel:
    """Point label ``name`` of ``prompt_id`` at ``version`` (creating the label) and record the
    move with who (``user``; None for the automatic rollback), when and why.

    ``percent`` is the canary's share of new conversations; other labels carry none.
    """
    if name not in PromptLabel.Name.values:
        raise InvalidInput(f"Unknown label {name!r}.", code="prompt_label_unknown")
    if not reason.strip():
        raise InvalidInput("Say why the label moves.", code="prompt_label_reason")
    if not 0 <= percent <= 100 or (percent and name != PromptLabel.Name.CANARY):
        raise InvalidInput(
            "Only the canary label carries a percentage, from 0 to 100.",
            code="prompt_label_percent",
        )
    try:
        prompt_load(f"{prompt_id}@{version}")
    except (LookupError, KeyError, ValueError) as exc:
        raise InvalidInput(
            f"No prompt version {prompt_id}@{version}: {exc}", code="prompt_version_unknown"
        ) from exc
    with transaction.atomic():
        label, created = PromptLabel.objects.select_for_update().get_or_create(
            prompt_id=prompt_id,
            name=name,
            defaults={"version": version, "percent": percent, "updated_by": user},
        )
        before = ("", 0) if created else (label.version, label.percent)
        label.version, label.percent, label.updated_by = version, percent, user
        label.save()
        PromptLabelMove.objects.create(
            label=label,
            from_version=before[0],
            to_version=version,
            from_percent=before[1],
            to_percent=percent,
            moved_by=user,
            reason=reason.strip(),
        )
    logger.info(
        "prompt label moved",
        extra={
            "prompt_id": prompt_id,
            "label": name,
            "from_version": before[0],
            "to_version": version,
            "percent": percent,
            "moved_by": getattr(user, "username", "") or "automatic",
        },
    )
    return label


def prompt_canary_promote(*, prompt_id: str, user: Any, reason: str) -> PromptLabel:
    """Make the canary's version production's and stop the canary (0%): two recorded moves."""
    canary = PromptLabel.objects.filter(prompt_id=prompt_id, name=PromptLabel.Name.CANARY).first()
    if canary is None:
        raise InvalidInput(f"{prompt_id} has no canary to promote.", code="prompt_no_canary")
    with transaction.atomic():
        production = prompt_label_move(
            prompt_id=prompt_id,
            name=PromptLabel.Name.PRODUCTION,
            version=canary.version,
            user=user,
            reason=f"promoted the canary: {reason}",
        )
        prompt_label_move(
            prompt_id=prompt_id,
            name=PromptLabel.Name.CANARY,
            version=canary.version,
            percent=0,
            user=user,
            reason=f"promoted to production: {reason}",
        )
    return production


def prompt_choose(*, conversation_id: Any, new: bool, prompt_id: str = "") -> tuple[Prompt, str]:
    """The prompt version of a conversation's turn, and why (``pinned``, ``canary`` or
    ``production``).

    A conversation keeps the version of its first answer while that version is live (production,
    or a canary with traffic), even when the percentage changes; otherwise, and for a new
    conversation, its fixed bucket decides between the canary and production.
    """
    live = prompt_live_versions(prompt_id=prompt_id or prompt_default_id())
    pinned = (
        None
        if new
        else prompt_pinned_version(conversation_id=conversation_id, prompt_id=live.prompt_id)
    )
    if pinned is not None and pinned in (live.production, live.canary):
        version, why = pinned, "pinned"
    elif live.canary and canary_bucket(live.prompt_id, str(conversation_id)) < live.canary_percent:
        version, why = live.canary, "canary"
    else:
        version, why = live.production, "production"
    return prompt_load(f"{live.prompt_id}@{version}"), why


@dataclass(frozen=True)
class CanaryVerdict:
    """What ``prompt_canary_check`` found: ``off`` (no canary traffic), ``too_few`` (below the
    minimum sample), ``healthy`` or ``rolled_back`` (with the reasons)."""

    status: str
    prompt_id: str
    reasons: list[str] = field(default_factory=list)
    comparison: PromptComparison | None = None


def canary_limits() -> CanaryLimits:
    return CanaryLimits(
        min_answers=settings.RAGAPP_CANARY_MIN_ANSWERS,
        max_refusal_delta=settings.RAGAPP_CANARY_MAX_REFUSAL_DELTA,
        max_thumbs_down_delta=settings.RAGAPP_CANARY_MAX_THUMBS_DOWN_DELTA,
        max_citation_failure_delta=settings.RAGAPP_CANARY_MAX_CITATION_FAILURE_DELTA,
        max_cost_ratio=settings.RAGAPP_CANARY_MAX_COST_RATIO,
        max_p95_ratio=settings.RAGAPP_CANARY_MAX_P95_RATIO,
    )


def prompt_canary_check(*, prompt_id: str = "") -> CanaryVerdict:
    """Compare the canary with production over the window; when it is worse beyond the
    ``RAGAPP_CANARY_*`` limits (and both have the minimum sample), move the canary label back to
    production's version at 0%, record the move and raise a ``prompt.rollback`` alert."""
    comparison = prompt_compare(prompt_id=prompt_id or None)
    pid, canary = comparison.prompt_id, comparison.canary
    if canary is None:
        return CanaryVerdict(status="off", prompt_id=pid, comparison=comparison)
    limits = canary_limits()
    if min(comparison.production.answers, canary.answers) < limits.min_answers:
        return CanaryVerdict(status="too_few", prompt_id=pid, comparison=comparison)
    reasons = canary_regressions(comparison.production, canary, limits)
    if not reasons:
        return CanaryVerdict(status="healthy", prompt_id=pid, comparison=comparison)
    production = comparison.live.production
    prompt_label_move(
        prompt_id=pid,
        name=PromptLabel.Name.CANARY,
        version=production,
        percent=0,
        user=None,
        reason=f"automatic rollback of @{canary.version}: " + "; ".join(reasons),
    )
    alert_raise(
        kind="prompt.rollback",
        key=f"{pid}@{canary.version}",
        message=(
            f"Canary {pid}@{canary.version} was rolled back to @{production}: " + "; ".join(reasons)
        ),
        details={
            "prompt_id": pid,
            "canary": asdict(canary),
            "production": asdict(comparison.production),
            "reasons": reasons,
            "since": comparison.since.isoformat(),
        },
    )
    return CanaryVerdict(
        status="rolled_back", prompt_id=pid, reasons=reasons, comparison=comparison
    )
