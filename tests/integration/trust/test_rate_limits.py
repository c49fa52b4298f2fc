"""Per-user and anonymous rate limits on asking, through a real HTTP server: a loop of requests
until the limit, a 429 in the house error shape with Retry-After, a guardrail event each."""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.authtoken.models import Token

from agent.models import GuardrailEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def ask(base: str, question: str, *, token: str = "", client: httpx.Client | None = None):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Token {token}"} if token else {}
    http = client or httpx
    return http.post(f"{base}/api/v1/ask", json={"question": question}, headers=headers, timeout=60)


@override_settings(RAGAPP_RATE_ASK="3/min")
def test_a_user_over_the_rate_gets_429_with_retry_after_and_each_refusal_is_logged(
    live_server, alice, mallory
):
    token = Token.objects.create(user=alice).key
    statuses = [ask(live_server.url, f"What is plan {n}?", token=token) for n in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    refused = statuses[-1]
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert refused.json() == {
        "error": {
            "code": "rate_limited",
            "message": f"Too many requests; try again in {retry_after} seconds.",
            "extra": {"retry_after_s": retry_after},
        }
    }
    events = GuardrailEvent.objects.filter(rule="rate_limit")
    assert events.count() == 2
    assert {(e.stage, e.action, e.user_id) for e in events} == {("input", "rejected", alice.id)}
    # The count is per user, kept in the shared cache (the database table without Redis).
    assert settings.CACHES["default"]["BACKEND"].endswith("DatabaseCache")
    assert len(cache.get(f"throttle_ask_{alice.pk}")) == 3
    other = ask(live_server.url, "What is plan 9?", token=Token.objects.create(user=mallory).key)
    assert other.status_code == 200


@override_settings(RAGAPP_RATE_ASK="2/min")
def test_a_users_tokens_and_browser_session_share_one_allowance(live_server, alice):
    token = Token.objects.create(user=alice).key
    assert ask(live_server.url, "First?", token=token).status_code == 200
    with httpx.Client() as browser:
        page = browser.get(f"{live_server.url}/accounts/login/")
        csrf = page.cookies["csrftoken"]
        browser.post(
            f"{live_server.url}/accounts/login/",
            data={"username": "alice", "password": alice.raw_password, "csrfmiddlewaretoken": csrf},
            headers={"Referer": f"{live_server.url}/accounts/login/"},
        )
        headers = {"X-CSRFToken": browser.cookies["csrftoken"], "Referer": live_server.url}
        second = browser.post(
            f"{live_server.url}/api/v1/ask", json={"question": "Second?"}, headers=headers
        )
        third = browser.post(
            f"{live_server.url}/api/v1/ask", json={"question": "Third?"}, headers=headers
        )
    assert (second.status_code, third.status_code) == (200, 429)


@override_settings(RAGAPP_ANONYMOUS_CHAT=True, RAGAPP_RATE_ANON="2/min", RAGAPP_RATE_ASK="50/min")
def test_anonymous_visitors_have_their_own_stricter_limit(live_server, alice):
    with httpx.Client() as visitor:
        codes = [
            ask(live_server.url, f"Question {n}?", client=visitor).status_code for n in range(3)
        ]
    assert codes == [200, 200, 429]
    event = GuardrailEvent.objects.get(rule="rate_limit")
    assert event.user is None and "RAGAPP_RATE_ANON=2/min from 127.0.0.1" in event.excerpt
    token = Token.objects.create(user=alice).key
    assert ask(live_server.url, "Signed in?", token=token).status_code == 200
