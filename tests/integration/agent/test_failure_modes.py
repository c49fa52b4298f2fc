"""Every provider failure mode through POST /api/v1/ask against the real loopback server: what
the user sees, what is logged, how many calls were made and what they cost."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from agent.models import CircuitBreaker, GuardrailEvent, Message, UsageRecord
from tests.support.openai_server import (
    cut_stream,
    delay,
    empty,
    finish_length,
    hang_up,
    malformed,
    ok,
    refusal,
    status,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

QUESTION = "How long is a password reset link valid?"
CLAIM = "Password reset links expire after 30 minutes."
ANSWER = {"decision": "answer", "confidence": 0.9, "claims": [{"text": CLAIM, "passages": [1]}]}
# gpt-4o: $2.50 in, $10.00 out per 1M tokens
COST_1000_50 = (1000 * 2.50 + 50 * 10.00) / 1e6


def ask(client, question: str = QUESTION, **body: Any):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/ask", {"question": question, **body}, format="json")


def calls() -> list[tuple[str, str, str]]:
    """(provider, model, error code or "ok") of every recorded call, in order."""
    return [(r.provider, r.model, r.error_code or "ok") for r in UsageRecord.objects.order_by("id")]


def total_cost() -> float:
    return float(sum(r.cost_usd for r in UsageRecord.objects.all()))


def sse(response) -> list[tuple[str, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """The (event, data) pairs of a streamed response."""
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- retried, then answered by the primary model ------------------------------------------------


def test_a_429_with_retry_after_is_retried_after_the_wait_and_only_the_success_costs(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(status(429, retry_after=0.3), ok(ANSWER, usage=(1000, 50)))

    body = ask(client_for(alice)).json()

    assert (body["decision"], body["degraded"]) == ("answered", False)
    assert body["answer"] == f"{CLAIM} [1]"
    assert calls() == [("openai", "gpt-4o", "http_429"), ("openai", "gpt-4o", "ok")]
    assert server.requests[1].received_at - server.requests[0].received_at >= 0.28
    assert len({r.idempotency_key for r in server.requests}) == 1
    assert body["usage"]["cost_usd"] == pytest.approx(COST_1000_50) == total_cost()


def test_malformed_json_is_repaired_once_and_both_calls_are_billed(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(malformed("{nope"), ok(ANSWER, usage=(1000, 50)))

    body = ask(client_for(alice)).json()

    assert (body["decision"], body["degraded"]) == ("answered", False)
    assert calls() == [("openai", "gpt-4o", "malformed_json"), ("openai", "gpt-4o", "ok")]
    assert len(server.requests) == 2
    assert body["usage"]["calls"] == 2 and total_cost() > COST_1000_50  # the bad reply cost too


# --- every failure falls back to the extractive answerer, marked degraded ------------------------


@pytest.mark.parametrize(
    ("behaviours", "codes"),
    [
        ([status(500), status(503)], ["http_500", "http_503"]),
        ([hang_up(), hang_up()], ["connection", "connection"]),
        ([delay(1.5, ANSWER), delay(1.5, ANSWER)], ["timeout", "timeout"]),
        ([malformed(), malformed("[still]")], ["malformed_json", "malformed_json"]),
        ([finish_length()], ["truncated"]),
        ([empty()], ["empty"]),
        ([refusal("I can't help with that.")], ["refusal"]),
        ([status(401)], ["http_401"]),
    ],
    ids=["5xx", "hang_up", "read_timeout", "malformed_twice", "length", "empty", "refusal", "401"],
)
def test_a_failing_provider_falls_back_to_the_extractive_answerer_marked_degraded(
    client_for, alice, small_kb, chain, behaviours, codes
):
    server = chain("gpt-4o")
    server.script(*behaviours)

    body = ask(client_for(alice)).json()

    assert (body["decision"], body["degraded"]) == ("answered", True)
    assert "30 minutes" in body["answer"] and body["citations"]
    assert calls() == [("openai", "gpt-4o", c) for c in codes] + [
        ("extractive", "extractive", "ok")
    ]
    assert len(server.requests) == len(codes)
    assert body["usage"]["calls"] == len(codes) + 1
    message = Message.objects.get(role="assistant")
    assert message.degraded and message.provider == "extractive"
    assert message.trace["attempts"][-1] == "extractive/extractive:ok"


def test_a_connection_refused_falls_back_without_waiting(client_for, alice, small_kb, chain):
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    chain("gpt-4o", options={"base_url": f"http://127.0.0.1:{port}/v1"})

    body = ask(client_for(alice)).json()

    assert (body["decision"], body["degraded"]) == ("answered", True)
    assert calls()[:2] == [("openai", "gpt-4o", "connection")] * 2
    assert total_cost() == 0


def test_a_connect_timeout_falls_back_after_the_connect_timeout(client_for, alice, small_kb, chain):
    # A listener whose accept queue is full: the kernel drops further SYNs, so a connection
    # neither succeeds nor is refused; only the client's connect timeout ends the wait.
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued.connect(("127.0.0.1", port))  # fills the queue, never accepted
        chain(
            "gpt-4o",
            options={"base_url": f"http://127.0.0.1:{port}/v1", "connect_timeout_s": 0.5},
        )
        started = time.monotonic()
        body = ask(client_for(alice)).json()
        elapsed = time.monotonic() - started

    assert (body["decision"], body["degraded"]) == ("answered", True)
    assert calls()[:2] == [("openai", "gpt-4o", "timeout")] * 2
    assert elapsed < 4  # two 0.5 s connect attempts and a backoff, not the 30 s read timeout
    assert total_cost() == 0


def test_a_cheaper_model_takes_over_before_the_extractive_answerer(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", "gpt-4o-mini")
    server.script(status(503), status(503), ok(ANSWER, usage=(1000, 50)))

    body = ask(client_for(alice)).json()

    assert (body["decision"], body["degraded"]) == ("answered", True)
    assert [r.body["model"] for r in server.requests] == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    assert calls()[-1] == ("openai", "gpt-4o-mini", "ok")
    assert total_cost() == pytest.approx((1000 * 0.15 + 50 * 0.60) / 1e6)


def test_when_every_model_fails_a_person_follows_up(client_for, alice, small_kb, chain):
    server = chain("gpt-4o", extractive=False)
    server.default = status(503)

    body = ask(client_for(alice)).json()

    assert (body["decision"], body["degraded"]) == ("escalated", True)
    assert "a person who will follow up" in body["answer"] and body["citations"] == []
    assert calls() == [("openai", "gpt-4o", "http_503")] * 2 and total_cost() == 0


def test_the_turn_attempt_cap_stops_the_chain_before_the_next_remote_model(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", "gpt-4o-mini", RAGAPP_TURN_MAX_ATTEMPTS=2)
    server.default = status(503)

    body = ask(client_for(alice)).json()

    assert body["degraded"] is True
    assert [r.body["model"] for r in server.requests] == ["gpt-4o", "gpt-4o"]
    message = Message.objects.get(role="assistant")
    assert message.trace["skipped"] == ["openai/gpt-4o-mini: attempt cap"]


# --- streaming -----------------------------------------------------------------------------------


def test_a_slow_first_token_times_out_and_the_stream_falls_back(client_for, alice, small_kb, chain):
    server = chain("gpt-4o", options={"max_attempts": 1, "first_token_timeout_s": 0.3})
    server.script(delay(1.0, ANSWER))

    events = sse(ask(client_for(alice), stream=True))

    names = [name for name, _ in events]
    assert names[0] == "meta" and names[-1] == "done" and "delta" in names
    done = events[-1][1]
    assert (done["decision"], done["degraded"], done["partial"]) == ("answered", True, False)
    assert calls() == [
        ("openai", "gpt-4o", "first_token_timeout"),
        ("extractive", "extractive", "ok"),
    ]
    assert UsageRecord.objects.get(error_code="first_token_timeout").latency_ms >= 280


def test_a_stream_cut_mid_answer_keeps_the_shown_text_says_so_and_does_not_fall_back(
    client_for, alice, small_kb, chain
):
    two_claims = {
        **ANSWER,
        "claims": [
            {"text": CLAIM, "passages": [1]},
            {"text": "Request a new link once it has expired.", "passages": [1]},
        ],
    }
    server = chain("gpt-4o")
    server.script(cut_stream(after_chunks=10, content=two_claims))  # 16 characters a chunk

    events = sse(ask(client_for(alice), stream=True))

    deltas = "".join(data["text"] for name, data in events if name == "delta")
    assert deltas == f"{CLAIM} [1]"
    done = events[-1][1]
    assert done["partial"] is True and done["degraded"] is True
    assert done["answer"].startswith(f"{CLAIM} [1]") and "interrupted" in done["answer"]
    assert len(server.requests) == 1  # no retry, no fallback once the user is reading
    assert calls() == [("openai", "gpt-4o", "connection")]
    record = UsageRecord.objects.get()
    assert record.tokens_estimated and record.output_tokens > 0  # what was streamed is billed


def test_a_stream_cut_before_any_claim_is_retried(client_for, alice, small_kb, chain):
    server = chain("gpt-4o")
    server.script(cut_stream(after_chunks=1), ok(ANSWER, usage=(1000, 50)))

    events = sse(ask(client_for(alice), stream=True))

    done = events[-1][1]
    assert (done["decision"], done["degraded"], done["partial"]) == ("answered", False, False)
    assert calls() == [("openai", "gpt-4o", "connection"), ("openai", "gpt-4o", "ok")]


def test_a_streamed_answer_arrives_claim_by_claim_then_matches_the_json_answer(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(ok(ANSWER, usage=(1000, 50)))

    events = sse(ask(client_for(alice), stream=True))

    assert [name for name, _ in events] == ["meta", "delta", "done"]
    delta = events[1][1]
    assert delta["text"] == f"{CLAIM} [1]" and delta["citations"][0]["number"] == 1
    done = events[2][1]
    assert done["answer"] == f"{CLAIM} [1]" and done["usage"]["cost_usd"] == pytest.approx(
        COST_1000_50
    )
    assert server.requests[0].body["stream"] is True
    assert Message.objects.get(role="assistant").trace["ttft_ms"] > 0


# --- the first-token budget of streamed turns ----------------------------------------------------

REAL_BACKOFF = {"max_attempts": 3, "max_backoff_s": 8.0}  # the fixture caps waits at 0.5 s


def test_a_streamed_429_with_a_long_retry_after_falls_back_at_once_within_the_budget(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", options=REAL_BACKOFF, RAGAPP_FIRST_TOKEN_BUDGET_S=2.5)
    server.script(status(429, retry_after=5))
    started = time.monotonic()

    events = sse(ask(client_for(alice), stream=True))

    assert time.monotonic() - started < 5.0  # the Retry-After was not waited out
    assert [name for name, _ in events][:2] == ["meta", "delta"]
    done = events[-1][1]
    assert (done["decision"], done["degraded"], done["partial"]) == ("answered", True, False)
    assert "30 minutes" in done["answer"]
    assert len(server.requests) == 1  # the 429 was not waited out nor retried
    assert calls() == [("openai", "gpt-4o", "http_429"), ("extractive", "extractive", "ok")]
    message = Message.objects.get(role="assistant")
    assert message.provider == "extractive" and message.trace["ttft_ms"] < 2500
    assert message.trace["attempts"] == ["openai/gpt-4o:http_429", "extractive/extractive:ok"]
    assert message.trace["first_token_budget"] == ["openai/gpt-4o: http_429, not waiting 5.0 s"]


def test_a_streamed_429_over_the_budget_goes_to_the_cheaper_model_first(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", "gpt-4o-mini", options=REAL_BACKOFF, RAGAPP_FIRST_TOKEN_BUDGET_S=2.5)
    server.script(status(429, retry_after=5), ok(ANSWER, usage=(1000, 50)))

    events = sse(ask(client_for(alice), stream=True))

    done = events[-1][1]
    assert (done["decision"], done["degraded"]) == ("answered", True)
    assert done["answer"] == f"{CLAIM} [1]"
    assert [r.body["model"] for r in server.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert calls() == [("openai", "gpt-4o", "http_429"), ("openai", "gpt-4o-mini", "ok")]
    assert Message.objects.get(role="assistant").trace["ttft_ms"] < 2500


def test_a_streamed_429_whose_wait_fits_the_budget_is_waited_out_and_retried(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", options=REAL_BACKOFF, RAGAPP_FIRST_TOKEN_BUDGET_S=2.5)
    server.script(status(429, retry_after=0.3), ok(ANSWER, usage=(1000, 50)))

    events = sse(ask(client_for(alice), stream=True))

    done = events[-1][1]
    assert (done["decision"], done["degraded"]) == ("answered", False)
    assert calls() == [("openai", "gpt-4o", "http_429"), ("openai", "gpt-4o", "ok")]
    assert server.requests[1].received_at - server.requests[0].received_at >= 0.28


def test_the_turn_never_makes_more_than_three_provider_calls_by_default(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o", "gpt-4o-mini", options=REAL_BACKOFF | {"backoff_base_s": 0.01})
    server.default = status(503)

    body = ask(client_for(alice)).json()

    assert body["degraded"] is True
    assert len(server.requests) == 3
    assert Message.objects.get(role="assistant").trace["skipped"] == [
        "openai/gpt-4o-mini: attempt cap"
    ]


# --- circuit breaker -----------------------------------------------------------------------------


def test_the_breaker_opens_after_repeated_failures_and_then_skips_the_provider(
    client_for, alice, small_kb, chain, client
):
    server = chain(
        "gpt-4o", RAGAPP_BREAKER_FAILURES=2, RAGAPP_BREAKER_COOLDOWN_S=60, RAGAPP_CACHE_EXACT=False
    )
    server.default = status(503)
    api = client_for(alice)

    ask(api)
    ask(api)
    assert CircuitBreaker.objects.get(key="openai/gpt-4o").state == "open"
    before = len(server.requests)

    body = ask(api).json()

    assert len(server.requests) == before  # no call while open
    assert (body["decision"], body["degraded"]) == ("answered", True)
    message = Message.objects.filter(role="assistant").last()
    assert message.trace["skipped"] == ["openai/gpt-4o: circuit open"]
    ready = client.get("/readyz").json()["checks"]["chat_models"]
    assert ready["open"] == ["openai/gpt-4o"]


def test_after_the_cool_down_one_trial_call_closes_the_breaker(client_for, alice, small_kb, chain):
    server = chain(
        "gpt-4o", RAGAPP_BREAKER_FAILURES=1, RAGAPP_BREAKER_COOLDOWN_S=0.2, RAGAPP_CACHE_EXACT=False
    )
    server.script(status(503), status(503))
    api = client_for(alice)
    ask(api)
    assert CircuitBreaker.objects.get().state == "open"
    time.sleep(0.25)

    body = ask(api).json()

    assert (body["decision"], body["degraded"]) == ("answered", False)
    breaker = CircuitBreaker.objects.get()
    assert (breaker.state, breaker.failures) == ("closed", 0)


def test_reply_problems_do_not_count_against_the_breaker(client_for, alice, small_kb, chain):
    server = chain("gpt-4o", RAGAPP_BREAKER_FAILURES=1)
    server.script(refusal())

    ask(client_for(alice))

    assert not CircuitBreaker.objects.filter(state="open").exists()


# --- citations -----------------------------------------------------------------------------------


def test_an_invented_claim_is_removed_and_logged_while_the_supported_one_is_answered(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(
        ok(
            {
                **ANSWER,
                "claims": [
                    {"text": CLAIM, "passages": [1]},
                    {"text": "Premium members get a free phone upgrade.", "passages": [1]},
                ],
            }
        )
    )

    body = ask(client_for(alice)).json()

    assert body["decision"] == "answered" and "upgrade" not in body["answer"]
    event = GuardrailEvent.objects.get(rule="unsupported_claim")
    assert event.action == "removed" and event.score < 0.5


def test_an_answer_with_no_supported_claim_is_escalated_honestly(
    client_for, alice, small_kb, chain
):
    server = chain("gpt-4o")
    server.script(
        ok({**ANSWER, "claims": [{"text": "Links last 45 minutes on weekends.", "passages": [1]}]})
    )

    body = ask(client_for(alice)).json()

    assert body["decision"] == "escalated" and "45" not in body["answer"]
    assert "person" in body["answer"]
    assert GuardrailEvent.objects.filter(rule="unsupported_answer", action="escalated").exists()
