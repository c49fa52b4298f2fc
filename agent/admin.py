from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from agent import selectors
from agent.models import (
    Alert,
    AnswerCache,
    CircuitBreaker,
    Conversation,
    EscalatedMessage,
    Feedback,
    GuardrailEvent,
    Message,
    PromptLabel,
    PromptLabelMove,
    ReviewItem,
    UsageRecord,
)
from agent.pipeline.prompt import prompt_refs
from agent.services.breaker import breaker_states
from agent.services.prompts import canary_limits, prompt_canary_promote, prompt_label_move


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
    search_fields = ["text", "=trace_id"]
    readonly_fields = ["trace_link", *(f.name for f in Message._meta.fields)]

    @admin.display(description="text")
    def short_text(self, obj: Message) -> str:
        return obj.text[:80]

    @admin.display(description="trace")
    def trace_link(self, obj: Message) -> str:
        if not obj.trace_id:
            return "-"
        url = reverse("trace-detail", args=[obj.trace_id])
        return format_html('<a href="{}" data-testid="trace-link">{}</a>', url, obj.trace_id)


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ["message", "user", "rating", "reason", "comment", "updated_at"]
    list_filter = ["rating", "reason", "updated_at"]
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
    list_filter = ["stage", "rule", "action", "created_at", "user"]
    search_fields = ["excerpt"]
    readonly_fields = [f.name for f in GuardrailEvent._meta.fields]

    def changelist_view(self, request: HttpRequest, extra_context=None):  # type: ignore[no-untyped-def]
        """Above the list: events per rule per day, of the events the filters select."""
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["per_day"] = selectors.guardrail_counts_per_day(
                changelist.queryset
            )
        return response


@admin.register(EscalatedMessage)
class ReviewQueueAdmin(MessageAdmin):
    """Answers the gate handed to a person, newest first."""

    list_display = [
        "short_text",
        "question",
        "confidence",
        "provider",
        "degraded",
        "trace_link",
        "created_at",
    ]
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


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "message", "webhook_status", "resolved_at"]
    list_filter = ["kind", "resolved_at", "created_at"]
    readonly_fields = [f.name for f in Alert._meta.fields if f.name != "resolved_at"]


# --- prompt labels, their moves, and the production/canary comparison -----------------------------


class PromptLabelForm(forms.ModelForm):
    """A label's version is one of the registry's files; every save records why."""

    version = forms.ChoiceField(choices=())
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="recorded")

    class Meta:
        model = PromptLabel
        fields = ["prompt_id", "name", "version", "percent"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        versions = sorted({ref.partition("@")[2] for ref in prompt_refs()}, key=_version_order)
        self.fields["version"].choices = [(v, v) for v in versions]
        if "prompt_id" in self.fields:  # read-only once the label exists
            self.fields["prompt_id"].initial = selectors.prompt_default_id()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        prompt_id = data.get("prompt_id", self.instance.prompt_id)
        name = data.get("name", self.instance.name)
        ref = f"{prompt_id}@{data.get('version')}"
        if data.get("version") and ref not in prompt_refs():
            self.add_error("version", f"There is no prompt file {ref}.toml.")
        if data.get("percent") and name != PromptLabel.Name.CANARY:
            self.add_error("percent", "Only the canary label carries a percentage.")
        return data


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


class PromptLabelMoveInline(admin.TabularInline):
    model = PromptLabelMove
    fields = [
        "created_at",
        "from_version",
        "to_version",
        "from_percent",
        "to_percent",
        "moved_by",
        "reason",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PromptLabel)
class PromptLabelAdmin(admin.ModelAdmin):
    """Move labels without a deploy: each save goes through ``prompt_label_move`` (recorded)."""

    form = PromptLabelForm
    list_display = ["prompt_id", "name", "version", "percent", "updated_by", "updated_at"]
    list_filter = ["prompt_id", "name"]
    inlines = [PromptLabelMoveInline]
    actions = ["promote"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["prompt_id", "name"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: PromptLabel, form: Any, change: bool) -> None:
        label = prompt_label_move(
            prompt_id=obj.prompt_id,
            name=obj.name,
            version=obj.version,
            percent=obj.percent,
            user=request.user,
            reason=form.cleaned_data["reason"],
        )
        obj.pk = label.pk  # the admin's redirect and log entry need it

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a label is moved (recorded), never deleted

    @admin.action(description="Promote the selected canaries to production (canary to 0%)")
    def promote(self, request: HttpRequest, queryset: Any) -> None:
        for label in queryset.filter(name=PromptLabel.Name.CANARY):
            prompt_canary_promote(
                prompt_id=label.prompt_id, user=request.user, reason="promoted from the admin"
            )
            self.message_user(request, f"{label.prompt_id}@{label.version} is now production.")

    def get_urls(self) -> list[Any]:
        compare = path(
            "compare/", self.admin_site.admin_view(self.compare_view), name="prompt-compare"
        )
        return [compare, *super().get_urls()]

    def compare_view(self, request: HttpRequest) -> HttpResponse:
        """Production against the canary over the last ``?hours=`` (staff only, read-only)."""
        try:
            hours = max(0.1, float(request.GET.get("hours", settings.RAGAPP_CANARY_WINDOW_H)))
        except ValueError:
            hours = settings.RAGAPP_CANARY_WINDOW_H
        prompt_id = request.GET.get("prompt_id") or selectors.prompt_default_id()
        try:
            comparison = selectors.prompt_compare(
                prompt_id=prompt_id, since=timezone.now() - timedelta(hours=hours)
            )
        except LookupError as exc:
            raise Http404(str(exc)) from exc
        columns = [comparison.production, *([comparison.canary] if comparison.canary else [])]
        rows = [
            (label, [_metric(getattr(stats, name), kind) for stats in columns])
            for label, name, kind in COMPARE_ROWS
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Prompt versions: {comparison.prompt_id}",
            "opts": self.model._meta,
            "comparison": comparison,
            "hours": hours,
            "headers": [
                f"production @{comparison.live.production}",
                *(
                    [f"canary @{comparison.canary.version} ({comparison.live.canary_percent}%)"]
                    if comparison.canary
                    else []
                ),
            ],
            "rows": rows,
            "limits": canary_limits(),
            "moves": PromptLabelMove.objects.filter(
                label__prompt_id=comparison.prompt_id
            ).select_related("label", "moved_by")[:20],
        }
        return TemplateResponse(request, "admin/agent/promptlabel/compare.html", context)


COMPARE_ROWS = [
    ("answers", "answers", "count"),
    ("rated answers", "rated", "count"),
    ("thumbs up (share of answers)", "thumbs_up_rate", "rate"),
    ("thumbs down (share of answers)", "thumbs_down_rate", "rate"),
    ("refusals", "refusal_rate", "rate"),
    ("escalations", "escalation_rate", "rate"),
    ("citation failures (answers with a claim removed)", "citation_failure_rate", "rate"),
    ("cost per answer (USD)", "cost_per_answer_usd", "usd"),
    ("latency p50 (ms)", "latency_p50_ms", "ms"),
    ("latency p95 (ms)", "latency_p95_ms", "ms"),
]


def _metric(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    return {
        "count": f"{value}",
        "rate": f"{value:.1%}",
        "usd": f"{value:.6f}",
        "ms": f"{value:.0f}",
    }[kind]


@admin.register(PromptLabelMove)
class PromptLabelMoveAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "label",
        "from_version",
        "to_version",
        "from_percent",
        "to_percent",
        "moved_by",
        "reason",
    ]
    list_filter = ["label__prompt_id", "label__name", "created_at"]
    readonly_fields = [f.name for f in PromptLabelMove._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    """The review queue's items; reviewers work them on /review/."""

    list_display = ["id", "message", "reasons", "status", "verdict", "reviewer", "created_at"]
    list_filter = ["status", "verdict", "created_at"]
    list_select_related = ["message", "reviewer"]
    readonly_fields = [f.name for f in ReviewItem._meta.fields]
