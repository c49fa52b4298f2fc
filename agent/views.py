"""HTML pages of the agent app: the chat (which talks to ``/api/v1/`` from static JavaScript) and
the reviewers' queue (plain forms)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

from agent import selectors
from agent.models import Feedback, ReviewItem
from agent.services.review import review_item_promote, review_item_resolve
from evals.corpus import sample_files
from ragapp.errors import InvalidInput
from ragapp.roles import user_is_reviewer

View = Callable[..., HttpResponse]


@ensure_csrf_cookie  # the page's fetch calls read the token from the csrftoken cookie
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page: conversations, messages, citations and feedback. Anonymous visitors sign
    in first, unless anonymous chat is on (then they ask the public collections)."""
    if not request.user.is_authenticated and not settings.RAGAPP_ANONYMOUS_CHAT:
        return redirect_to_login(request.get_full_path())
    context = {
        "max_question_chars": settings.RAGAPP_MAX_QUESTION_CHARS,
        "feedback_reasons": Feedback.Reason.choices,
    }
    return render(request, "agent/chat.html", context)


# --- The review queue -----------------------------------------------------------------------------


def reviewer_required(view: View) -> View:
    """Signed-out visitors go to the sign-in page; to anyone but a reviewer the pages do not
    exist (404, exactly like a missing item)."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_is_reviewer(request.user):
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return wrapped


class ResolveForm(forms.Form):
    verdict = forms.ChoiceField(choices=ReviewItem.Verdict.choices)
    corrected_answer = forms.CharField(required=False, max_length=8000)


class PromoteForm(forms.Form):
    expect = forms.ChoiceField(
        choices=[("answered", "answered"), ("refused", "refused"), ("declined", "declined")]
    )
    question = forms.CharField(required=False, max_length=4000)
    source = forms.CharField(required=False, max_length=300)
    evidence = forms.CharField(required=False, max_length=500)
    facts = forms.CharField(required=False, max_length=1000, help_text="one per line")


def _item_or_404(item_id: int) -> ReviewItem:
    item = selectors.review_item_get(item_id=item_id)
    if item is None:
        raise Http404("No such review item.")
    return item


@reviewer_required
def review_list(request: HttpRequest) -> HttpResponse:
    """The queue, filtered by reason and status (open by default)."""
    reason = request.GET.get("reason", "")
    status = request.GET.get("status", ReviewItem.Status.OPEN)
    reason = reason if reason in ReviewItem.Reason.values else ""
    status = status if status in ReviewItem.Status.values else ""
    items = selectors.review_item_list(reason=reason, status=status)
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "reason": reason,
        "status": status,
        "reasons": ReviewItem.Reason.choices,
        "statuses": ReviewItem.Status.choices,
    }
    return render(request, "review/list.html", context)


def _detail(
    request: HttpRequest, item: ReviewItem, *, error: str = "", status: int = 200
) -> HttpResponse:
    detail = selectors.review_item_detail(item)
    cited_names = [p.document_name for p in detail.passages if p.cited]
    context = {
        "detail": detail,
        "error": error,
        "reason_labels": [ReviewItem.Reason(r).label for r in item.reasons],
        "corpus_files": [p.name for p in sample_files()],
        "suggested_source": cited_names[0] if cited_names else "",
        "trace_json": json.dumps(detail.answer.trace, indent=2, sort_keys=True, default=str),
        "promoted_json": json.dumps(item.promoted_case, indent=2, ensure_ascii=False),
    }
    return render(request, "review/detail.html", context, status=status)


@reviewer_required
def review_detail(request: HttpRequest, item_id: int) -> HttpResponse:
    """The question, the answer with its citations, the retrieved passages with stage scores,
    the trace, and the reviewer's actions."""
    return _detail(request, _item_or_404(item_id))


@require_POST
@reviewer_required
def review_resolve(request: HttpRequest, item_id: int) -> HttpResponse:
    """Mark the answer correct or incorrect, with an optional corrected answer for the user."""
    item = _item_or_404(item_id)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return _detail(request, item, error=_form_error(form), status=400)
    review_item_resolve(
        item=item,
        reviewer=request.user,
        verdict=form.cleaned_data["verdict"],
        corrected_answer=form.cleaned_data["corrected_answer"],
    )
    messages.success(request, f"Marked {form.cleaned_data['verdict']}.")
    return redirect("review-detail", item_id=item.id)


@require_POST
@reviewer_required
def review_promote(request: HttpRequest, item_id: int) -> HttpResponse:
    """Write the question as a case of the eval set."""
    item = _item_or_404(item_id)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        return _detail(request, item, error=_form_error(form), status=400)
    data = form.cleaned_data
    try:
        item = review_item_promote(
            item=item,
            expect=data["expect"],
            question=data["question"],
            source=data["source"],
            evidence=data["evidence"],
            facts=data["facts"].splitlines(),
        )
    except InvalidInput as exc:
        return _detail(request, item, error=exc.message, status=400)
    messages.success(request, f"Promoted to the eval set as {item.promoted_case_id}.")
    return redirect("review-detail", item_id=item.id)


def _form_error(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
