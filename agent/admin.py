from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Sum
from django.http import HttpRequest

from agent import selectors
from agent.models import (
    AnswerCache,
    CircuitBreaker,
    Conversation,
    EscalatedMessage,
    Feedback,
    GuardrailEvent,
    Message,
    UsageRecord,
)
from agent.services.breaker import breaker_states


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["role", "text", "decision", "confidence", "prompt_version", "degraded", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "messages_count", "calls", "tokens", "cost_usd", "updated_at"]
    search_fields = ["title", "user__username"]
    list_filter = ["updated_at"]
    inlines = [MessageInline]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_messages=Count("messages", distinct=True),
                n_calls=Count("usage", distinct=True),
                n_tokens=Sum("usage__input_tokens") + Sum("usage__output_tokens"),
                total_cost=Sum("usage__cost_usd"),
            )
        )

    @admin.display(ordering="n_messages", description="messages")
    def messages_count(self, obj: Conversation) -> int:
        return obj.n_messages  # type: ignore[attr-defined, no-any-return]

    @admin.display(ordering="n_calls", description="model calls")
    def calls(self, obj: Conversation) -> int:
        return obj.n_calls  # type: ignore[attr-defined, no-any-return]

    @admin.display(ordering="n_tokens", description="tokens")
    def tokens(self, obj: Conversation) -> int:
        return obj.n_tokens or 0  # type: ignore[attr-defined, no-any-return]

    @admin.display(ordering="total_cost", description="cost (USD)")
    def cost_usd(self, obj: Conversation) -> float:
        return float(obj.total_cost or 0)  # type: ignore[attr-defined]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "short_text",
        "role",
        "decision",
        "confidence",
        "provider",
        "model",
        "route",
        "cache",
        "prompt_version",
        "degraded",
        "partial",
        "latency_ms",
        "created_at",
    ]
    list_filter = [
        "role",
        "decision",
        "degraded",
        "partial",
        "route",
        "cache",
        "provider",
        "prompt_version",
    ]
    search_fields = ["text"]
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "rating", "comment", "updated_at"]
    list_filter = ["rating", "updated_at"]
    search_fields = ["comment", "message__text"]
    list_select_related = ["message", "user"]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "provider",
        "model",
        "route",
        "input_tokens",
        "output_tokens",
        "tokens_estimated",
        "cost_usd",
        "latency_ms",
        "succeeded",
        "error_code",
        "prompt_version",
        "user",
        "conversation",
    ]
    list_filter = ["provider", "model", "route", "succeeded", "tokens_estimated", "created_at"]
    readonly_fields = [f.name for f in UsageRecord._meta.fields]
    date_hierarchy = "created_at"

    def changelist_view(self, request: HttpRequest, extra_context=None):  # type: ignore[no-untyped-def]
        """Above the list: cost rolled up per day, route, model and user."""
        rollups = {
            by: selectors.usage_rollup(by=by)[:10] for by in ("day", "route", "model", "user")
        }
        return super().changelist_view(request, {**(extra_context or {}), "rollups": rollups})


@admin.register(GuardrailEvent)
class GuardrailEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "stage", "rule", "action", "score", "excerpt", "user"]
    list_filter = ["stage", "rule", "action", "created_at"]
    search_fields = ["excerpt"]
    readonly_fields = [f.name for f in GuardrailEvent._meta.fields]


@admin.register(EscalatedMessage)
class ReviewQueueAdmin(MessageAdmin):
    """Answers the gate handed to a person, newest first."""

    list_display = ["short_text", "question", "confidence", "provider", "degraded", "created_at"]
    list_filter = ["degraded", "provider", "created_at"]

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return (
            super()
            .get_queryset(request)
            .filter(role=Message.Role.ASSISTANT, decision=Message.Decision.ESCALATED)
            .order_by("-created_at")
        )

    @admin.display(description="question")
    def question(self, obj: Message) -> str:
        asked = (
            Message.objects.filter(
                conversation_id=obj.conversation_id, role=Message.Role.USER, id__lt=obj.id
            )
            .order_by("-id")
            .values_list("text", flat=True)
            .first()
        )
        return (asked or "")[:80]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    """Shared breaker state per provider/model (live state from the store, incl. Redis)."""

    list_display = [
        "key",
        "live_state",
        "state",
        "failures",
        "open_until",
        "last_error",
        "updated_at",
    ]
    readonly_fields = [f.name for f in CircuitBreaker._meta.fields]
    actions = ["reset"]

    @admin.display(description="live state")
    def live_state(self, obj: CircuitBreaker) -> str:
        return str(breaker_states().get(obj.key, {}).get("state", obj.state))

    @admin.action(description="Close the selected breakers (allow calls again)")
    def reset(self, request: HttpRequest, queryset) -> None:  # type: ignore[no-untyped-def]
        from agent.services.breaker import breaker_store

        for breaker in queryset:
            breaker_store().record_success(breaker.key)


@admin.register(AnswerCache)
class AnswerCacheAdmin(admin.ModelAdmin):
    list_display = ["question", "scope", "prompt_version", "context", "hits", "created_at"]
    list_filter = ["scope", "prompt_version", "created_at"]
    search_fields = ["question"]
    readonly_fields = [f.name for f in AnswerCache._meta.fields if f.name != "embedding"]
    exclude = ["embedding"]
