from __future__ import annotations

from agent.models import Feedback, Message
from ragapp.errors import NotFound


def feedback_give(*, user, message_id: int, rating: int, comment: str = "") -> Feedback:  # type: ignore[no-untyped-def]
    """Thumbs up/down on an answer in one of the user's own conversations (one per user)."""
    message = Message.objects.filter(
        id=message_id, role=Message.Role.ASSISTANT, conversation__user=user
    ).first()
    if message is None:
        raise NotFound("No such answer.")
    feedback, _ = Feedback.objects.update_or_create(
        message=message, user=user, defaults={"rating": rating, "comment": comment}
    )
    return feedback
