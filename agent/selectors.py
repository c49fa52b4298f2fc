from __future__ import annotations

from django.db.models import QuerySet

from agent.models import Conversation


def conversation_list(*, user) -> QuerySet[Conversation]:  # type: ignore[no-untyped-def]
    return Conversation.objects.filter(user=user).order_by("-updated_at")[:100]
