"""REST API for asking, conversations and feedback: one view per operation."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent import selectors, services
from agent.models import Message


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
        "citations": [citation_out(c) for c in message.citations],
        "created_at": message.created_at.isoformat(),
    }


class AskApi(APIView):
    class InputSerializer(serializers.Serializer):
        question = serializers.CharField(
            trim_whitespace=False, allow_blank=True, max_length=100_000
        )
        conversation = serializers.UUIDField(required=False, allow_null=True)
        collection = serializers.SlugField(required=False, allow_null=True)

    class OutputSerializer(serializers.Serializer):
        answer = serializers.CharField()
        decision = serializers.ChoiceField(choices=["answered", "escalated", "refused"])
        confidence = serializers.FloatField()
        degraded = serializers.BooleanField()
        conversation = serializers.UUIDField()
        message = serializers.IntegerField()
        citations = serializers.ListField(child=serializers.DictField())
        usage = serializers.DictField()
        prompt_version = serializers.CharField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = services.answer_question(
            user=request.user,
            question=data.validated_data["question"],
            conversation_id=data.validated_data.get("conversation"),
            collection=data.validated_data.get("collection"),
        )
        m = outcome.message
        return Response(
            {
                "answer": m.text,
                "decision": m.decision,
                "confidence": m.confidence,
                "degraded": m.degraded,
                "conversation": str(outcome.conversation.id),
                "message": m.id,
                "citations": [citation_out(c) for c in m.citations],
                "usage": outcome.usage,
                "prompt_version": f"{m.prompt_id}@{m.prompt_version}",
                "prompt_hash": m.prompt_hash,
            }
        )


class ConversationListApi(APIView):
    def get(self, request: Request) -> Response:
        return Response(
            [
                {"id": str(c.id), "title": c.title, "updated_at": c.updated_at.isoformat()}
                for c in selectors.conversation_list(user=request.user)
            ]
        )


class ConversationDetailApi(APIView):
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = services.conversation_get_for_user(
            conversation_id=conversation_id, user=request.user
        )
        return Response(
            {
                "id": str(conversation.id),
                "title": conversation.title,
                "messages": [message_out(m) for m in conversation.messages.all()],
            }
        )


class FeedbackCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        message = serializers.IntegerField()
        rating = serializers.ChoiceField(choices=[1, -1])
        comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)

    @extend_schema(request=InputSerializer)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback = services.feedback_give(
            user=request.user,
            message_id=data.validated_data["message"],
            rating=data.validated_data["rating"],
            comment=data.validated_data.get("comment", ""),
        )
        return Response({"id": feedback.id}, status=status.HTTP_201_CREATED)
