from __future__ import annotations

from django.db import models


class Span(models.Model):
    """One finished OpenTelemetry span, stored when no OTLP collector is configured, so the
    trace page can draw the waterfall of any answer. Deleted after the retention period."""

    trace_id = models.CharField(max_length=32, help_text="32 hex characters")
    span_id = models.CharField(max_length=16)
    parent_id = models.CharField(max_length=16, blank=True, help_text="empty for a root span")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, help_text="internal, server, client, producer, consumer")
    service = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    status = models.CharField(max_length=10, help_text="unset, ok or error")
    status_message = models.CharField(max_length=300, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # [{"name", "offset_ms", "attributes"}], e.g. a recorded exception
    events = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(fields=["trace_id", "span_id"], name="span_unique_id")
        ]
        indexes = [models.Index(fields=["started_at"], name="span_started_at")]

    def __str__(self) -> str:
        return f"{self.name} ({self.duration_ms:.1f} ms)"
