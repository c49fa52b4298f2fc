"""The operations dashboard page: staff see it with their data; nobody else does."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from agent.services.alerts import alert_raise
from tests.support.dashboard_data import turn, usage

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

URL = "/ops/dashboard/"


def _charts(html: str) -> dict:  # type: ignore[type-arg]
    block = re.search(
        r'<script id="dashboard-charts" type="application/json">(.*?)</script>', html, re.S
    )
    assert block, "the chart data block is missing"
    return json.loads(block.group(1))


@pytest.mark.parametrize("who", ["bob", "carol"])
def test_staff_see_the_dashboard_with_their_data_and_open_alerts(request, who):
    user = request.getfixturevalue(who)
    alice = request.getfixturevalue("alice")
    now = timezone.now()
    turn(alice, now, cost="0.004", model="gpt-4o")
    usage(alice, now, cost="0", succeeded=False, error_code="rate_limited")
    alert_raise(kind="drift.p95_latency", key="24h-vs-7d", message="p95 answer latency +45%")
    client = Client()
    client.force_login(user)

    response = client.get(URL, {"days": "7"})

    assert response.status_code == 200
    html = response.content.decode()
    charts = _charts(html)
    assert charts["cost_by_model"]["datasets"][0]["label"] == "gpt-4o"
    assert charts["cost_by_model"]["datasets"][0]["data"][-1] == pytest.approx(0.004)
    assert len(charts["latency"]["labels"]) == 7
    assert 'data-chart="cost_by_model"' in html and 'data-chart="languages"' in html
    assert "drift.p95_latency" in html and "p95 answer latency +45%" in html
    assert "rate_limited" in html
    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    assert 'href="/admin/agent/promptlabel/compare/"' in html  # production vs canary
    # The CSP allows no inline script: the only script element without src is the data block.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [
        '<script id="dashboard-charts" type="application/json">'
    ]


def test_an_unknown_window_falls_back_to_thirty_days(bob):
    client = Client()
    client.force_login(bob)

    response = client.get(URL, {"days": "100000"})

    assert response.status_code == 200
    assert len(_charts(response.content.decode())["outcomes"]["labels"]) == 30


@pytest.mark.parametrize("who", ["alice", "mallory", None])
def test_end_users_outsiders_and_anonymous_visitors_are_sent_to_the_staff_login(request, who):
    client = Client()
    if who:
        client.force_login(request.getfixturevalue(who))

    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/ops/dashboard/")


def test_the_admin_index_links_to_the_dashboard(bob):
    client = Client()
    client.force_login(bob)

    html = client.get("/admin/").content.decode()

    assert 'href="/ops/dashboard/"' in html
    assert "Operations" in html
