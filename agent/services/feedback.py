from __future__ import annotations

from django.db import transaction

from agent.models import Feedback, Message
from agent.services.review import review_feedback_given
from ragapp.errors import InvalidInput, NotFound


def feedback_give(  # type: ignore[no-untyped-def]
    *, user, message_id: int, rating: int, reason: str = "", comment: str = ""
) -> Feedback:
    """Thumbs up/down on an answer in one of the user's own conversations (one per user, a
    second replaces the first), with an optional reason for a thumbs-down. A thumbs-down puts
    the answer in the review queue."""
    if reason and rating > 0:
        raise InvalidInput("A reason goes with a thumbs-down only.", code="reason_on_thumbs_up")
    message = Message.objects.filter(
        id=message_id, role=Message.Role.ASSISTANT, from_reviewer=False, conversation__user=user
    ).first()
    if message is None:
        raise NotFound("No such answer.")
    with transaction.atomic():
        feedback, _ = Feedback.objects.update_or_create(
            message=message,
            user=user,
            defaults={"rating": rating, "reason": reason, "comment": comment},
        )
        review_feedback_given(feedback)
    return feedback
