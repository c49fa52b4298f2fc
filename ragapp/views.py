"""Operations pages for staff."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from agent.models import Message
from ragapp.traces import trace_spans_list, waterfall_build


def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    """The waterfall of one stored trace; staff only (others get 404, as for a missing trace)."""
    if not request.user.is_staff:
        raise Http404("No such trace.")
    spans = trace_spans_list(trace_id=trace_id)
    messages = list(Message.objects.filter(trace_id=trace_id).order_by("created_at", "id"))
    if not spans and not messages:
        raise Http404("No such trace.")
    context = {
        "waterfall": waterfall_build(trace_id, spans),
        "messages": messages,
        "stored": settings.RAGAPP_TRACE_STORE,
        "retention_days": settings.RAGAPP_TRACE_RETENTION_DAYS,
    }
    return render(request, "ops/trace_detail.html", context)
