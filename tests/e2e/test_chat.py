"""The chat page in headless Chromium: sign in, ask, open a citation, give feedback."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM calls made by fixtures and
# by these tests would otherwise be refused as "async unsafe".
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from django.contrib.auth.models import User  # noqa: E402
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402
from pytest_django.live_server_helper import LiveServer  # noqa: E402

from agent.models import Feedback  # noqa: E402
from tests.conftest import PASSWORD  # noqa: E402
from tests.integration.agent import conftest as agent_fixtures  # noqa: E402
from tests.support.openai_server import cut_stream, ok  # noqa: E402

chain = agent_fixtures.chain  # the loopback OpenAI-protocol chain and small knowledge base
small_kb = agent_fixtures.small_kb

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "screenshots"
# The first answer of a test run loads the embedding and reranking models.
ANSWER_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the e2e tests drive Debian's Chromium "
            "(install it with `apt-get install -y chromium`).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page: Page, base_url: str, user: User) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_test_id("login-username").fill(user.username)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("question-input")).to_be_visible()
    # chat.js is deferred: typing before it binds its handlers would do nothing.
    expect(page.locator("#chat")).to_have_attribute("data-ready", "true")


def ask(page: Page, question: str) -> None:
    page.get_by_test_id("question-input").fill(question)
    page.get_by_test_id("question-input").press("Enter")


def last_answer(page: Page) -> Locator:
    answer = page.get_by_test_id("assistant-message").last
    expect(answer).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    return answer


def test_a_user_gets_a_cited_answer_opens_the_source_and_leaves_feedback(
    page: Page, live_server: LiveServer, bob: User, sample_kb: object
) -> None:
    log_in(page, live_server.url, bob)

    ask(page, "How long is a password reset link valid?")
    answer = last_answer(page)
    expect(answer.get_by_test_id("answer-text")).to_contain_text("30 minutes")

    answer.get_by_test_id("citation-1").click()
    panel = page.get_by_test_id("citation-panel")
    expect(panel).to_be_visible()
    document_link = panel.get_by_test_id("citation-document")
    expect(document_link).to_contain_text(re.compile(r"account", re.IGNORECASE))
    expect(document_link).to_have_attribute("href", re.compile(r"^/documents/[0-9a-f-]{36}/file$"))
    expect(panel.get_by_test_id("citation-text")).to_contain_text("30 minutes")
    href = document_link.get_attribute("href")
    assert href is not None
    assert page.request.get(live_server.url + href).ok, "the cited document's file should open"

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat.png"))

    answer.get_by_test_id("thumbs-down").click()
    answer.get_by_test_id("feedback-comment").fill("Too short")
    answer.get_by_test_id("feedback-submit").click()
    thanks = answer.get_by_test_id("feedback-thanks")
    expect(thanks).to_be_visible()
    expect(thanks).to_have_text("Thanks for your feedback")
    assert Feedback.objects.get(user=bob).rating == -1

    page.goto(f"{live_server.url}/admin/agent/feedback/")
    expect(page.locator("#result_list")).to_contain_text("Too short")


def test_a_past_conversation_reopens_from_the_sidebar(
    page: Page, live_server: LiveServer, bob: User, sample_kb: object
) -> None:
    log_in(page, live_server.url, bob)
    ask(page, "How long is a password reset link valid?")
    expect(last_answer(page).get_by_test_id("answer-text")).to_contain_text("30 minutes")
    expect(page.get_by_test_id("conversation-item")).to_have_count(1)

    page.get_by_test_id("new-conversation").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(0)

    page.get_by_test_id("conversation-item").first.click()
    expect(page.get_by_test_id("user-message")).to_have_text(
        "How long is a password reset link valid?"
    )
    reopened = last_answer(page)
    reopened.get_by_test_id("citation-1").click()
    expect(page.get_by_test_id("citation-text")).to_contain_text("30 minutes")


def test_a_question_over_the_length_limit_shows_the_error_banner(
    page: Page, live_server: LiveServer, bob: User
) -> None:
    log_in(page, live_server.url, bob)
    question = "x" * 3000

    ask(page, question)

    banner = page.get_by_test_id("error-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("2000 characters")
    expect(page.get_by_test_id("assistant-message")).to_have_count(0)
    # The question is handed back so it can be shortened.
    expect(page.get_by_test_id("question-input")).to_have_value(question)


def test_a_streamed_answer_cut_mid_way_keeps_its_text_and_a_retry_completes_it(
    page: Page, live_server: LiveServer, bob: User, small_kb: object, chain
) -> None:
    claims = [
        {"text": "Password reset links expire after 30 minutes.", "passages": [1]},
        {"text": "Request a new link once it has expired.", "passages": [1]},
    ]
    answer = {"decision": "answer", "confidence": 0.9, "claims": claims}
    server = chain(
        "gpt-4o",
        options={"timeout_s": 10.0, "first_token_timeout_s": 10.0, "idle_timeout_s": 10.0},
        RAGAPP_CACHE_EXACT=False,
        RAGAPP_CACHE_SEMANTIC=False,
    )
    server.script(cut_stream(after_chunks=10, content=answer), ok(answer))
    log_in(page, live_server.url, bob)

    ask(page, "How long is a password reset link valid?")

    cut = last_answer(page)
    expect(cut.get_by_test_id("partial-note")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect(cut.get_by_test_id("answer-text")).to_contain_text("30 minutes")
    expect(cut.get_by_test_id("answer-text")).to_contain_text("interrupted")
    cut.get_by_test_id("retry").click()

    expect(page.get_by_test_id("assistant-message")).to_have_count(2)
    full = last_answer(page)
    expect(full.get_by_test_id("answer-text")).to_contain_text("Request a new link")
    expect(full.get_by_test_id("partial-note")).to_have_count(0)
