from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from pgvector.django import VectorField


class Conversation(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Decision(models.TextChoices):
        ANSWERED = "answered"
        ESCALATED = "escalated"
        REFUSED = "refused"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # [{"number", "chunk_id", "document_id", "document_title", "page", "heading", "text"}]
    citations = models.JSONField(default=list, blank=True)
    prompt_id = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=20, blank=True)
    prompt_hash = models.CharField(max_length=64, blank=True)
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=100, blank=True)
    degraded = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    route = models.CharField(max_length=20, blank=True, help_text="the router's choice")
    cache = models.CharField(max_length=10, blank=True, help_text="exact, semantic or empty")
    partial = models.BooleanField(default=False, help_text="the stream was cut mid-answer")
    # Why the answer is what it is: route reason, rewrite, removed claims, support scores, timings.
    trace = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class Feedback(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    rating = models.SmallIntegerField(choices=[(1, "thumbs up"), (-1, "thumbs down")])
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user"], name="feedback_one_per_user")
        ]

    def __str__(self) -> str:
        return f"{'+1' if self.rating > 0 else '-1'} on message {self.message_id}"


class UsageRecord(models.Model):
    """One model call: who asked, which model, tokens, cost and latency."""

    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=100)
    route = models.CharField(max_length=50, help_text="what the call was for, e.g. answer")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    succeeded = models.BooleanField(default=True)
    error_code = models.CharField(max_length=50, blank=True)
    prompt_id = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=20, blank=True)
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} {self.input_tokens}+{self.output_tokens}"


class GuardrailEvent(models.Model):
    class Stage(models.TextChoices):
        INPUT = "input"
        RETRIEVAL = "retrieval"
        OUTPUT = "output"

    stage = models.CharField(max_length=16, choices=Stage.choices)
    rule = models.CharField(max_length=50)
    action = models.CharField(max_length=30, help_text="e.g. rejected, refused, removed")
    score = models.FloatField(null=True, blank=True)
    excerpt = models.CharField(max_length=300, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="guardrails"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.stage}/{self.rule}: {self.action}"


class EscalatedMessage(Message):
    """The review queue: answers the gate handed to a person."""

    class Meta:
        proxy = True
        verbose_name = "escalated answer"
        verbose_name_plural = "review queue"


class CircuitBreaker(models.Model):
    """Shared breaker state of one provider/model (the Redis store mirrors transitions here)."""

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    key = models.CharField(max_length=200, unique=True, help_text="provider/model")
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    failures = models.PositiveIntegerField(default=0, help_text="failed turns in a row")
    open_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=50, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key}: {self.state}"


class AnswerCache(models.Model):
    """An answered question, reusable while the documents and prompt stay the same."""

    key = models.CharField(max_length=64, unique=True, help_text="sha256 of the exact-match key")
    scope = models.CharField(max_length=200, help_text="collections searched, e.g. all or 1,3")
    index_version = models.CharField(max_length=64)
    prompt_version = models.CharField(max_length=120)
    context = models.CharField(max_length=64, blank=True, help_text="empty for a first turn")
    question = models.TextField(help_text="normalised")
    embedding = VectorField(dimensions=settings.RAGAPP_EMBEDDING_DIM, null=True, blank=True)
    # {"text", "decision", "confidence", "citations", "provider", "model", "cost_usd", ...}
    payload = models.JSONField()
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["scope", "index_version", "prompt_version"])]

    def __str__(self) -> str:
        return self.question[:60]


class IdempotencyKey(models.Model):
    """A client's ``Idempotency-Key`` for /ask: a repeat returns the stored answer."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE)
    usage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique")
        ]

    def __str__(self) -> str:
        return self.key
