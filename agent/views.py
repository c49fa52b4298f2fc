"""HTML pages of the agent app; the page itself talks to ``/api/v1/`` from static JavaScript."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie


@login_required
@ensure_csrf_cookie  # the page's fetch calls read the token from the csrftoken cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page: conversations, messages, citations and feedback."""
    context = {"max_question_chars": settings.RAGAPP_MAX_QUESTION_CHARS}
    return render(request, "agent/chat.html", context)
