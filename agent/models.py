from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import VectorField


class Conversation(models.Model):
    """A user's conversation, or an anonymous visitor's (no user; tied to the session)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="conversations",
    )
    session_key = models.CharField(
        max_length=40, blank=True, db_index=True, help_text="the anonymous visitor's session"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) | ~models.Q(session_key=""),
                name="conversation_has_an_owner",
            )
        ]

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
    from_reviewer = models.BooleanField(
        default=False, help_text="written by a person from the review queue, not generated"
    )
    # Why the answer is what it is: route reason, rewrite, removed claims, support scores, timings.
    trace = models.JSONField(default=dict, blank=True)
    trace_id = models.CharField(
        max_length=32, blank=True, db_index=True, help_text="OpenTelemetry trace (32 hex)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        permissions = [("review_message", "Can review answers (the review queue)")]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"


class Feedback(models.Model):
    class Reason(models.TextChoices):
        WRONG = "wrong", "Wrong"
        NOT_GROUNDED = "not_grounded", "Not backed by the sources"
        INCOMPLETE = "incomplete", "Incomplete"
        UNSAFE = "unsafe", "Unsafe or inappropriate"
        OTHER = "other", "Something else"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    rating = models.SmallIntegerField(choices=[(1, "thumbs up"), (-1, "thumbs down")])
    reason = models.CharField(max_length=20, choices=Reason.choices, blank=True)
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


class Alert(models.Model):
    """Something an operator must look at: a drift threshold crossed, a canary rolled back.

    Recorded here, shown on the dashboard and posted to ``RAGAPP_ALERT_WEBHOOK_URL`` when set.
    """

    kind = models.CharField(max_length=50, help_text="e.g. drift.refusal_rate, prompt.rollback")
    key = models.CharField(
        max_length=200,
        blank=True,
        help_text="an open alert with the same kind and key is not repeated",
    )
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    webhook_status = models.CharField(
        max_length=200, blank=True, help_text="empty (no webhook), sent, or failed: <why>"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "key", "resolved_at"])]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:60]}"


class PromptLabel(models.Model):
    """A label (``production``, ``canary``, ``staging``) pointing at a version of one prompt.

    Moved from the admin or by the automatic rollback, without a deploy; every move is a
    ``PromptLabelMove``. With no ``production`` row, answers use ``RAGAPP_PROMPT``.
    """

    class Name(models.TextChoices):
        PRODUCTION = "production"
        CANARY = "canary"
        STAGING = "staging"

    prompt_id = models.CharField(max_length=100)
    name = models.CharField(max_length=20, choices=Name.choices)
    version = models.CharField(max_length=20)
    percent = models.PositiveSmallIntegerField(
        default=0, help_text="canary only: its share of new conversations (0-100)"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prompt_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["prompt_id", "name"], name="prompt_label_unique"),
            models.CheckConstraint(
                condition=models.Q(percent__lte=100), name="prompt_label_percent_max_100"
            ),
        ]

    def __str__(self) -> str:
        share = f" ({self.percent}%)" if self.name == self.Name.CANARY else ""
        return f"{self.prompt_id} {self.name} -> @{self.version}{share}"


class PromptLabelMove(models.Model):
    """One move of a label: who (empty: the automatic rollback), when, why, from and to."""

    label = models.ForeignKey(PromptLabel, on_delete=models.CASCADE, related_name="moves")
    from_version = models.CharField(max_length=20, blank=True)
    to_version = models.CharField(max_length=20)
    from_percent = models.PositiveSmallIntegerField(default=0)
    to_percent = models.PositiveSmallIntegerField(default=0)
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.label}: @{self.from_version} -> @{self.to_version}"


class ReviewItem(models.Model):
    """One answer in the review queue, with why it is there and what a reviewer made of it.

    One item per answer: a second reason (a thumbs-down on a sampled answer) joins the first.
    """

    class Reason(models.TextChoices):
        ESCALATED = "escalated", "Escalated"
        THUMBS_DOWN = "thumbs_down", "Thumbs down"
        GUARDRAIL = "guardrail", "Guardrail event"
        SAMPLE = "sample", "Random sample"

    class Status(models.TextChoices):
        OPEN = "open"
        DONE = "done"

    class Verdict(models.TextChoices):
        CORRECT = "correct"
        INCORRECT = "incorrect"

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="review")
    reasons = ArrayField(models.CharField(max_length=20, choices=Reason.choices))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    verdict = models.CharField(max_length=10, choices=Verdict.choices, blank=True)
    corrected_answer = models.TextField(blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reply = models.OneToOneField(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="the corrected answer as posted to the user's conversation",
    )
    # The golden-set case written by "promote" (evals/cases/reviewed.jsonl), kept here too so
    # ``manage.py eval_export_reviewed`` can write it out from the database anywhere.
    promoted_case = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "-created_at"])]

    def __str__(self) -> str:
        return f"review of message {self.message_id}: {', '.join(self.reasons)}"

    @property
    def promoted_case_id(self) -> str:
        return str((self.promoted_case or {}).get("id", ""))


class QuestionProfile(models.Model):
    """What input-drift monitoring needs about one asked question, computed once: its embedding,
    how well the documents matched it, its language. The dashboard and the drift check read these
    rows instead of re-embedding the history on every run."""

    message = models.OneToOneField(
        Message, primary_key=True, on_delete=models.CASCADE, related_name="profile"
    )
    embedding = VectorField(dimensions=settings.RAGAPP_EMBEDDING_DIM)
    embedding_model = models.CharField(max_length=200)
    best_match = models.FloatField(
        help_text="cosine similarity of the nearest chunk, when profiled"
    )
    language = models.CharField(
        max_length=8, help_text="ISO 639-1, or 'und' when too short to tell"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.language} {self.best_match:.2f} for message {self.message_id}"
