"""Chat users streaming answers from ``POST /api/v1/ask`` (SSE), for ``bench/load/run.py``.

Environment (set by the runner): ``BENCH_TOKENS`` (a JSON file: ``{"users": [...], "burst":
token}``), ``BENCH_TURNS`` (a JSONL file this process appends one line per turn to) and
``BENCH_PHASE`` (a file holding the current phase name; the burst user only works in ``burst``).

Each turn records: when it started, the phase, the HTTP status, the time to the first answer
text (TTFT: the first ``delta`` event, or ``done`` when nothing streamed first), the total time,
how it ended (``done`` with a decision, an in-band ``error`` event, an HTTP error, or ``hung``:
no terminal event within the client's limit), and the stored message id.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import requests
from locust import HttpUser, between, task

QUESTIONS = [
    "How long is a password reset link valid?",
    "How many failed sign-in attempts pause signing in?",
    "How long is sign-in paused after failed attempts?",
    "What is the minimum password length?",
    "What happens to my other devices when I change my password?",
    "How do I turn on two-factor authentication?",
    "What are recovery codes for?",
    "How do I see my active sessions?",
    "How does sync work?",
    "Can I edit notes while offline?",
    "What happens when I reconnect after working offline?",
    "How are sync conflicts resolved?",
    "My notes are not syncing, what should I check?",
    "How do I export my notes?",
    "Which formats can I export notes to?",
    "How much does the paid plan cost?",
    "How do I change my billing plan?",
    "Can I get a refund?",
    "When am I billed?",
    "What payment methods are accepted?",
    "Does signing in on a new device send an e-mail?",
    "Can I sign in with a Google account?",
    "What if the password reset e-mail does not arrive?",
    "How do I export a single notebook?",
    "Is there a limit on offline changes?",
]
FOLLOW_UPS = ["Can you tell me more?", "And how long does that take?", "What if that fails?"]
CLIENT_LIMIT_S = 90.0  # a stream with no terminal event by then is "hung"
_ids = itertools.count()
_write_lock = threading.Lock()


def _tokens() -> dict[str, Any]:
    return json.loads(Path(os.environ["BENCH_TOKENS"]).read_text())


def _phase() -> str:
    try:
        return Path(os.environ["BENCH_PHASE"]).read_text().strip()
    except OSError:
        return "unknown"


def _record(row: dict[str, Any]) -> None:
    line = json.dumps(row) + "\n"
    with _write_lock, open(os.environ["BENCH_TURNS"], "a") as fh:
        fh.write(line)


class _Asker(HttpUser):
    abstract = True
    wait_time = between(3, 8)
    kind = "chat"

    def on_start(self) -> None:
        self.number = next(_ids)
        tokens = _tokens()
        self.token = self._pick_token(tokens)
        self.conversation: str | None = None
        self.turns_in_conversation = 0
        self.rng = random.Random(self.number)

    def _pick_token(self, tokens: dict[str, Any]) -> str:
        users = tokens["users"]
        return str(users[self.number % len(users)])

    def _question(self) -> str:
        if self.conversation and self.turns_in_conversation < 3 and self.rng.random() < 0.4:
            return self.rng.choice(FOLLOW_UPS)
        self.conversation, self.turns_in_conversation = None, 0
        return self.rng.choice(QUESTIONS)

    def ask_streaming_once(self) -> None:
        question = self._question()
        row = self.ask_streaming(question)
        if row.get("conversation"):
            self.conversation = row["conversation"]
            self.turns_in_conversation += 1

    def ask_streaming(self, question: str) -> dict[str, Any]:
        body: dict[str, Any] = {"question": question, "stream": True}
        if self.conversation:
            body["conversation"] = self.conversation
        row: dict[str, Any] = {
            "t": time.time(),
            "phase": _phase(),
            "kind": self.kind,
            "user": self.number,
            "follow_up": bool(self.conversation),
        }
        started = time.perf_counter()
        first_ms = None
        outcome, status, exception = "hung", 0, None
        try:
            with self.client.post(
                "/api/v1/ask",
                json=body,
                headers={
                    "Authorization": f"Token {self.token}",
                    # DRF answers a bare text/event-stream with 406 (no such renderer).
                    "Accept": "text/event-stream, application/json",
                },
                stream=True,
                timeout=(5, 30),
                catch_response=True,
                name="ask (open)",
            ) as response:
                status = response.status_code
                if status != 200:
                    outcome = "quota" if status == 429 else f"http_{status}"
                    row["error"] = response.text[:300]
                    if status >= 500:
                        response.failure(f"HTTP {status}")
                    else:
                        response.success()  # 4xx are answers too (e.g. the quota)
                else:
                    response.success()
                    outcome, first_ms = self._read_events(response, row, started)
        except Exception as exc:  # noqa: BLE001 - a client-side failure is a result to record
            exception = exc
            outcome = "hung" if isinstance(exc, requests.Timeout) else "client_error"
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        total_ms = (time.perf_counter() - started) * 1000
        row.update(status=status, outcome=outcome, total_ms=round(total_ms, 1))
        row["ttft_ms"] = round(first_ms, 1) if first_ms is not None else None
        _record(row)
        self.environment.events.request.fire(
            request_type="SSE",
            name=f"turn ({self.kind})",
            response_time=total_ms,
            response_length=0,
            exception=exception
            or (None if outcome in {"answered", "escalated", "refused", "quota"} else outcome),
            context={},
        )
        if first_ms is not None:
            self.environment.events.request.fire(
                request_type="SSE",
                name=f"ttft ({self.kind})",
                response_time=first_ms,
                response_length=0,
                exception=None,
                context={},
            )
        return row

    def _read_events(
        self, response: Any, row: dict[str, Any], started: float
    ) -> tuple[str, float | None]:
        """Read SSE events until ``done`` or ``error``; returns (outcome, TTFT ms)."""
        name, first_ms, deltas = "", None, 0
        deadline = started + CLIENT_LIMIT_S
        for raw in response.iter_lines(chunk_size=None):
            if time.perf_counter() > deadline:
                return "hung", first_ms
            line = raw.decode() if isinstance(raw, bytes) else raw
            if line.startswith("event: "):
                name = line[len("event: ") :]
                continue
            if not line.startswith("data: "):
                continue
            data = json.loads(line[len("data: ") :])
            if name in {"delta", "done"} and first_ms is None:
                first_ms = (time.perf_counter() - started) * 1000
            if name == "delta":
                deltas += 1
            elif name == "meta":
                row["conversation"] = data.get("conversation")
            elif name == "done":
                row.update(
                    decision=data.get("decision"),
                    degraded=data.get("degraded"),
                    partial=data.get("partial"),
                    message=data.get("message"),
                    conversation=data.get("conversation"),
                    calls=(data.get("usage") or {}).get("calls"),
                    deltas=deltas,
                )
                return str(data.get("decision")), first_ms
            elif name == "error":
                row["error"] = data
                return "error_event", first_ms
        return "unterminated", first_ms  # the stream ended without a terminal event


class ChatUser(_Asker):
    """A customer in the chat: asks, reads the streamed answer, thinks, sometimes follows up."""

    @task
    def ask(self) -> None:
        self.ask_streaming_once()


class BurstUser(_Asker):
    """Ten of these share one account: one user doing ten users' work. Idle outside the burst
    phase."""

    fixed_count = 10
    kind = "burst"

    def _pick_token(self, tokens: dict[str, Any]) -> str:
        return str(tokens["burst"])

    @task
    def burst(self) -> None:
        if _phase() != "burst":
            time.sleep(1.0)
            return
        self.conversation = None
        self.ask_streaming(self.rng.choice(QUESTIONS))
