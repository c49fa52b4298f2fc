"""The trace waterfall page in headless Chromium: drawn, and nothing refused by the CSP."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see test_chat.py

from django.contrib.auth.models import User  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402
from pytest_django.live_server_helper import LiveServer  # noqa: E402

from agent.models import Message  # noqa: E402
from ragapp.tracing import spans_store  # noqa: E402
from tests.conftest import wait_until  # noqa: E402
from tests.e2e import test_chat as chat  # noqa: E402
from tests.integration.agent import conftest as agent_fixtures  # noqa: E402

chain = agent_fixtures.chain
small_kb = agent_fixtures.small_kb
browser = chat.browser  # the chat test's Chromium and page fixtures
page = chat.page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_answers_trace_page_draws_its_waterfall_under_the_csp(
    page: Page,
    live_server: LiveServer,
    bob: User,
    small_kb: object,
    chain,
    spans,  # type: ignore[no-untyped-def]
) -> None:
    chain("gpt-4o")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    chat.log_in(page, live_server.url, bob)
    chat.ask(page, "How long is a password reset link valid?")
    expect(chat.last_answer(page).get_by_test_id("answer-text")).to_contain_text("30 minutes")
    # The text streams in before the answer is stored: wait for the stored message.
    message = wait_until(
        lambda: Message.objects.filter(role=Message.Role.ASSISTANT).order_by("-id").first()
    )
    spans_store(spans.get_finished_spans())  # what the batch exporter does in production

    page.goto(f"{live_server.url}/ops/traces/{message.trace_id}/")
    expect(page.get_by_test_id("waterfall")).to_be_visible()
    attempt = page.locator('tr[data-span="ragapp.llm.attempt"]')
    expect(attempt).to_have_count(1)
    bar = attempt.locator("rect.bar-span").bounding_box()
    assert bar is not None and bar["width"] > 0
    fill = attempt.locator("rect.bar-span").evaluate("r => getComputedStyle(r).fill")
    assert fill == "rgb(59, 111, 216)"  # trace.css applied: the stylesheet is allowed
    attempt.locator("summary").click()
    expect(attempt).to_contain_text("gen_ai.request.model")
    chat.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(chat.SCREENSHOTS / "trace.png"), full_page=True)
    assert refused == []
