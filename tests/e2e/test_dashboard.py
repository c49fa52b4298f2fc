"""The operations dashboard in headless Chromium: a week of traffic in, every chart drawn."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see test_chat.py

from django.contrib.auth.models import User  # noqa: E402
from django.utils import timezone  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402
from pytest_django.live_server_helper import LiveServer  # noqa: E402

from agent.models import Feedback, GuardrailEvent  # noqa: E402
from agent.services.alerts import alert_raise  # noqa: E402
from agent.services.drift import drift_check  # noqa: E402
from ingestion.models import Collection, Document  # noqa: E402
from tests.e2e import test_chat  # noqa: E402
from tests.support.dashboard_data import turn, usage  # noqa: E402

# The chat page tests' fixtures: headless Chromium, a page in it, the small knowledge base.
browser, page, small_kb = test_chat.browser, test_chat.page, test_chat.small_kb
SCREENSHOTS, log_in = test_chat.SCREENSHOTS, test_chat.log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUESTIONS = [
    "How long is a password reset link valid?",
    "How many recovery codes do I get with two-factor authentication?",
    "Do notes edited offline sync when I reconnect?",
    "Wie lange ist ein Link zum Zurücksetzen gültig?",
    "Which football club won the 1974 cup final?",
]

# Per canvas: is there a Chart.js chart on it, and how many of its pixels are not transparent.
DRAWN = """() => [...document.querySelectorAll("canvas[data-chart]")].map((canvas) => {
  const ctx = canvas.getContext("2d");
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
  const chart = window.Chart.getChart(canvas);
  return {
    name: canvas.dataset.chart,
    chart: Boolean(chart),
    points: chart ? chart.data.datasets.reduce((n, ds) => n + ds.data.length, 0) : 0,
    inked,
    area: canvas.width * canvas.height,
  };
})"""


def _week_of_traffic(alice: User, bob: User) -> None:
    now = timezone.now()
    for day in range(7):
        when = now - timedelta(days=day, minutes=5)
        for n in range(4 + day % 3):
            decision = ("answered", "answered", "escalated", "refused")[n % 4]
            answer = turn(
                alice if n % 2 else bob,
                when,
                question=QUESTIONS[n % len(QUESTIONS)],
                decision=decision,
                text="Links expire after 30 minutes [1]." * (1 + n),
                latency_ms=300 + 150 * n + 40 * day,
                cost=f"{0.0008 * (n + 1):.6f}",
                model="gpt-4o-mini" if n % 3 else "gpt-4o",
                prompt_version="1" if day > 3 else "2",
                degraded=n == 3,
                cache="exact" if n == 1 and day % 2 else "",
                trace={"saved_usd": 0.0016} if n == 1 and day % 2 else {},
            )
            if decision == "answered":
                Feedback.objects.create(message=answer, user=alice, rating=1 if n else -1)
        usage(alice, when, cost="0", succeeded=False, error_code="rate_limited")
        GuardrailEvent.objects.create(stage="output", rule="invalid_citation", action="removed")
    collection = Collection.objects.get_or_create(slug="failures", name="failures")[0]
    for n, reason in enumerate(["encrypted: a.pdf", "encrypted: b.pdf", "no extractable text"]):
        Document.objects.create(
            collection=collection,
            title=f"broken {n}",
            file=f"documents/broken-{n}",
            original_name=f"broken-{n}",
            content_hash=f"broken-{n}",
            status=Document.Status.FAILED,
            error=reason,
        )


def test_the_admin_opens_the_dashboard_and_every_chart_is_drawn(
    page: Page,
    live_server: LiveServer,
    bob: User,
    alice: User,
    small_kb: object,
) -> None:
    _week_of_traffic(alice, bob)
    drift_check()  # profiles the questions: the drift charts have data
    alert_raise(kind="drift.refusal_rate", key="24h-vs-7d", message="refusal rate 40% vs 12%")
    errors: list[str] = []  # CSP violations ("Refused to ...") and script errors
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []  # the browser asks for /favicon.ico, which we do not serve
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

    log_in(page, live_server.url, bob)
    page.goto(f"{live_server.url}/admin/")
    page.get_by_test_id("admin-ops-dashboard").click()
    expect(page).to_have_url(re.compile(r"/ops/dashboard/$"))
    page.get_by_role("link", name="7d", exact=True).click()
    dashboard = page.get_by_test_id("dashboard")
    expect(dashboard).to_have_attribute("data-charts-ready", re.compile(r"^\d+$"))

    drawn = page.evaluate(DRAWN)

    assert len(drawn) == 15
    for canvas in drawn:
        assert canvas["chart"], f"{canvas['name']}: no Chart.js chart"
        assert canvas["points"] > 0, f"{canvas['name']}: no data"
        # Axes, grid, legend and the data: a blank canvas would be 0.
        assert canvas["inked"] > canvas["area"] * 0.01, f"{canvas['name']} looks blank"
    assert dashboard.get_attribute("data-charts-ready") == "15"
    expect(page.get_by_test_id("alerts")).to_contain_text("refusal rate 40% vs 12%")
    expect(page.get_by_test_id("top-users")).to_contain_text("alice")
    expect(page.get_by_test_id("prompts")).to_contain_text("grounded_answer@2")
    assert [u for u in failed if not u.endswith("/favicon.ico")] == []
    assert [e for e in errors if not e.startswith("Failed to load resource")] == []

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
