"""REST API for asking, conversations and feedback: one view per operation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent import selectors, services
from agent.api.throttles import AskAnonThrottle, AskUserThrottle
from agent.models import Feedback, Message
from agent.services.streaming import answer_stream
from ragapp.errors import AppError, InvalidInput

logger = logging.getLogger(__name__)


class SignedInOrAnonymousChat(BasePermission):
    """Signed in, or anonymous while RAGAPP_ANONYMOUS_CHAT is on (public collections only)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user.is_authenticated or settings.RAGAPP_ANONYMOUS_CHAT)


def caller(request: Request, *, create_session: bool = False) -> tuple[Any, str]:
    """``(user, session key)``; an anonymous visitor is ``(None, their session's key)``, with a
    session started for them when ``create_session`` (their conversations are tied to it)."""
    if request.user.is_authenticated:
        return request.user, ""
    session = request.session
    if session.session_key is None and create_session:
        session["anonymous_chat"] = True  # modified: the response sets the session cookie
        session.save()
    return None, session.session_key or ""


def citation_out(citation: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": citation["number"],
        "document": {"id": citation["document_id"], "title": citation["document_title"]},
        "page": citation["page"],
        "heading": citation["heading"],
        "text": citation["text"],
        "url": reverse("document-file", args=[citation["document_id"]]),
    }


def message_out(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "text": message.text,
        "decision": message.decision,
        "degraded": message.degraded,
        "partial": message.partial,
        "from_reviewer": message.from_reviewer,
        "citations": [citation_out(c) for c in message.citations],
        "created_at": message.created_at.isoformat(),
    }


def answer_out(outcome: services.AnswerOutcome) -> dict[str, Any]:
    """The /ask answer; the JSON response and the stream's ``done`` event carry the same."""
    m = outcome.message
    return {
        "answer": m.text,
        "decision": m.decision,
        "confidence": m.confidence,
        "degraded": m.degraded,
        "partial": m.partial,
        "cached": m.cache or None,
        "replayed": outcome.replayed,
        "route": m.route,
        "conversation": str(outcome.conversation.id),
        "message": m.id,
        "citations": [citation_out(c) for c in m.citations],
        "usage": outcome.usage,
        "prompt_version": f"{m.prompt_id}@{m.prompt_version}",
        "prompt_hash": m.prompt_hash,
    }


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, default=str)}\n\n".encode()


def sse_body(events: Iterator[tuple[str, Any]]) -> Iterator[bytes]:
    yield b": stream open\n\n"  # flushes headers through proxies at once
    try:
        for name, data in events:
            yield sse_event(name, answer_out(data) if name == "done" else data)
    except Exception as exc:  # the stream is open: report in-band, the status is already 200
        logger.exception("answer stream failed")
        code = exc.code if isinstance(exc, AppError) else "stream_failed"
        message = exc.message if isinstance(exc, AppError) else "Something went wrong."
        yield sse_event("error", {"code": code, "message": message, "retry": True})


class AskApi(APIView):
    """Ask a question. ``Accept: text/event-stream`` (or ``"stream": true``) streams the answer
    as Server-Sent Events; an ``Idempotency-Key`` header makes a repeat return the stored answer.
    """

    class InputSerializer(serializers.Serializer):
        question = serializers.CharField(
            trim_whitespace=False, allow_blank=True, max_length=100_000
        )
        conversation = serializers.UUIDField(required=False, allow_null=True)
        collection = serializers.SlugField(required=False, allow_null=True)
        stream = serializers.BooleanField(required=False, default=False)

        class Meta:
            ref_name = "AskInput"

    permission_classes = [SignedInOrAnonymousChat]
    throttle_classes = [AskUserThrottle, AskAnonThrottle]

    class OutputSerializer(serializers.Serializer):
        answer = serializers.CharField()
        decision = serializers.ChoiceField(choices=["answered", "escalated", "refused"])
        confidence = serializers.FloatField()
        degraded = serializers.BooleanField()
        partial = serializers.BooleanField()
        cached = serializers.ChoiceField(choices=["exact", "semantic"], allow_null=True)
        replayed = serializers.BooleanField()
        route = serializers.CharField()
        conversation = serializers.UUIDField()
        message = serializers.IntegerField()
        citations = serializers.ListField(child=serializers.DictField())
        usage = serializers.DictField()
        prompt_version = serializers.CharField()

        class Meta:
            ref_name = "AskOutput"

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # ``Accept: text/event-stream`` asks for the stream, which bypasses the renderers; any
        # other response (an error before the stream opens) is plain JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        request=InputSerializer,
        responses=OutputSerializer,
        parameters=[
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)
        ],
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 200:
            raise InvalidInput("Idempotency-Key is limited to 200 characters.")
        user, session_key = caller(request, create_session=True)
        arguments = {
            "user": user,
            "session_key": session_key,
            "question": data.validated_data["question"],
            "conversation_id": data.validated_data.get("conversation"),
            "collection": data.validated_data.get("collection"),
            "idempotency_key": key if user is not None else "",  # keys are kept per account
        }
        wants_stream = data.validated_data["stream"] or "text/event-stream" in request.headers.get(
            "Accept", ""
        )
        if wants_stream:
            events = answer_stream(**arguments)  # raises (budget, 404 ...) before the stream
            response = StreamingHttpResponse(sse_body(events), content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
            return response
        return Response(answer_out(services.answer_question(**arguments)))


class UsageRollupApi(APIView):
    """Staff only: calls, tokens and cost grouped by conversation, user, route, model or day."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="usage_rollup",
        parameters=[
            OpenApiParameter("by", str, enum=["conversation", "user", "route", "model", "day"])
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        by = request.query_params.get("by", "day")
        if by not in selectors.ROLLUP_FIELDS:
            raise InvalidInput(f"by must be one of {', '.join(selectors.ROLLUP_FIELDS)}.")
        return Response({"by": by, "rows": selectors.usage_rollup(by=by)})


class ConversationListApi(APIView):
    permission_classes = [SignedInOrAnonymousChat]

    @extend_schema(operation_id="conversations_list", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        user, session_key = caller(request)
        return Response(
            [
                {"id": str(c.id), "title": c.title, "updated_at": c.updated_at.isoformat()}
                for c in selectors.conversation_list(user=user, session_key=session_key)
            ]
        )


class ConversationDetailApi(APIView):
    permission_classes = [SignedInOrAnonymousChat]

    @extend_schema(operation_id="conversation_get", responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, conversation_id: str) -> Response:
        user, session_key = caller(request)
        conversation = services.conversation_get_for_user(
            conversation_id=conversation_id, user=user, session_key=session_key
        )
        return Response(
            {
                "id": str(conversation.id),
                "title": conversation.title,
                "messages": [message_out(m) for m in conversation.messages.all()],
            }
        )


class FeedbackCreateApi(APIView):
    """Thumbs up/down on an answer, with an optional reason (thumbs-down only) and comment; a
    thumbs-down puts the answer in the review queue."""

    class InputSerializer(serializers.Serializer):
        message = serializers.IntegerField()
        rating = serializers.ChoiceField(choices=[1, -1])
        reason = serializers.ChoiceField(
            choices=Feedback.Reason.choices, required=False, allow_blank=True
        )
        comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)

        class Meta:
            ref_name = "FeedbackInput"

    @extend_schema(request=InputSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback = services.feedback_give(
            user=request.user,
            message_id=data.validated_data["message"],
            rating=data.validated_data["rating"],
            reason=data.validated_data.get("reason", ""),
            comment=data.validated_data.get("comment", ""),
        )
        return Response({"id": feedback.id}, status=status.HTTP_201_CREATED)
