"""The review loop in headless Chromium: a user rates an answer down with a reason, a reviewer
finds it in the queue, reads its trace (and its waterfall), corrects it and promotes it to the
eval set, the user sees the reviewer's answer in the conversation, and the admin's dashboard shows
the thumbs-down in its charts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see test_chat.py

from django.contrib.auth.models import User  # noqa: E402
from playwright.sync_api import Browser, Page, expect  # noqa: E402
from pytest_django.live_server_helper import LiveServer  # noqa: E402

from agent.models import Feedback, ReviewItem  # noqa: E402
from evals.cases import golden_set_load  # noqa: E402
from ragapp.tracing import spans_store  # noqa: E402
from tests.e2e.test_chat import (  # noqa: E402
    SCREENSHOTS,
    ask,
    browser,
    last_answer,
    log_in,
    page,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

__all__ = ["browser", "page"]  # fixtures shared with the chat tests

QUESTION = "How long is a password reset link valid?"
CORRECTED = "A reset link is valid for 30 minutes; request a new one from the sign-in page."


def test_a_reviewer_corrects_a_rated_down_answer_promotes_it_and_the_user_sees_the_correction(
    page: Page,
    browser: Browser,
    live_server: LiveServer,
    alice: User,
    bob: User,
    carol: User,
    sample_kb: object,
    settings,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    spans,  # type: ignore[no-untyped-def]
) -> None:
    settings.RAGAPP_EVAL_CASES_DIR = tmp_path
    # alice asks, gets a cited answer and rates it down with a reason.
    log_in(page, live_server.url, alice)
    expect(page.get_by_test_id("nav-review")).to_have_count(0)
    ask(page, QUESTION)
    answer = last_answer(page)
    expect(answer.get_by_test_id("answer-text")).to_contain_text("30 minutes")
    answer.get_by_test_id("thumbs-down").click()
    answer.get_by_test_id("feedback-reason").select_option("incomplete")
    answer.get_by_test_id("feedback-comment").fill("Does it say what to do after?")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "feedback-reason.png"))
    answer.get_by_test_id("feedback-submit").click()
    expect(answer.get_by_test_id("feedback-thanks")).to_be_visible()
    assert Feedback.objects.get(user=alice).reason == "incomplete"
    conversation_url = page.url

    # carol, a reviewer, finds it in the queue under "thumbs down".
    reviewer_context = browser.new_context(viewport={"width": 1280, "height": 900})
    reviewer = reviewer_context.new_page()
    reviewer.set_default_timeout(15_000)
    log_in(reviewer, live_server.url, carol)
    reviewer.get_by_test_id("nav-review").click()
    expect(reviewer).to_have_url(re.compile(r"/review/$"))
    reviewer.get_by_test_id("filter-reason").select_option("thumbs_down")
    reviewer.get_by_test_id("filter-submit").click()
    row = reviewer.get_by_test_id("review-item")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(QUESTION)
    row.get_by_test_id("review-item-link").click()

    # The item: question, answer, passages with stage scores, the user's feedback, the trace.
    expect(reviewer.get_by_test_id("review-question")).to_contain_text(QUESTION)
    expect(reviewer.get_by_test_id("review-answer-text")).to_contain_text("30 minutes")
    expect(reviewer.get_by_test_id("review-passage").first).to_contain_text("dense")
    expect(reviewer.get_by_test_id("review-feedback")).to_contain_text("Incomplete")
    trace = reviewer.get_by_test_id("review-trace")
    trace.locator("summary").click()
    expect(trace.get_by_test_id("review-trace-json")).to_contain_text("retrieve_ms")
    expect(trace.get_by_test_id("review-trace-json")).to_be_visible()
    spans_store(spans.get_finished_spans())  # what the batch exporter does in production
    trace.get_by_test_id("trace-link").click()
    expect(reviewer.get_by_test_id("waterfall")).to_be_visible()
    expect(reviewer.locator('tr[data-span="ragapp.answer.retrieve.rerank"]')).to_have_count(1)
    reviewer.go_back()

    # Marks it incorrect with a corrected answer, then promotes it to the eval set.
    reviewer.get_by_test_id("corrected-answer").fill(CORRECTED)
    reviewer.get_by_test_id("mark-incorrect").click()
    expect(reviewer.get_by_test_id("review-notice")).to_have_text("Marked incorrect.")
    expect(reviewer.get_by_test_id("review-verdict")).to_have_text("incorrect")
    promote = reviewer.get_by_test_id("review-promote")
    expect(promote.get_by_test_id("promote-source")).to_have_value("account-and-security.md")
    promote.get_by_test_id("promote-evidence").fill("Password reset links expire after 30 minutes")
    promote.get_by_test_id("promote-facts").fill("30 minutes")
    promote.get_by_test_id("promote-submit").click()
    expect(reviewer.get_by_test_id("promoted-case-id")).to_contain_text("reviewed-")
    reviewer.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=True)
    reviewer_context.close()

    item = ReviewItem.objects.get()
    assert (item.verdict, item.reviewer) == ("incorrect", carol)
    (case,) = golden_set_load(tmp_path).cases
    assert (case.id, case.question, case.source) == (
        item.promoted_case_id,
        QUESTION,
        "account-and-security.md",
    )

    # alice opens her conversation again and reads the reviewer's answer, marked as a person's.
    page.goto(conversation_url)
    reply = page.get_by_test_id("reviewer-message")
    expect(reply).to_be_visible()
    expect(reply.get_by_test_id("reviewer-badge")).to_have_text("Answered by a support person")
    expect(reply).to_contain_text(CORRECTED)
    expect(reply.get_by_test_id("thumbs-down")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "chat-reviewer-answer.png"))

    # bob, an admin, sees the thumbs-down on the dashboard: in the quality chart and per prompt.
    admin_context = browser.new_context(viewport={"width": 1280, "height": 900})
    admin = admin_context.new_page()
    admin.set_default_timeout(15_000)
    log_in(admin, live_server.url, bob)
    admin.goto(f"{live_server.url}/ops/dashboard/?days=7")
    expect(admin.get_by_test_id("dashboard")).to_have_attribute(
        "data-charts-ready", re.compile(r"^\d+$")
    )
    thumbs_up_rate = admin.evaluate(
        """() => Chart.getChart(document.querySelector('canvas[data-chart="quality_rates"]'))
            .data.datasets.find(d => d.label === "thumbs-up rate").data"""
    )
    assert thumbs_up_rate[-1] == 0  # today's one rated answer was rated down
    expect(admin.get_by_test_id("prompts")).to_contain_text("0 / 1")
    admin.screenshot(path=str(SCREENSHOTS / "dashboard-after-review.png"), full_page=True)
    admin_context.close()
