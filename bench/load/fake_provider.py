"""A misbehaving OpenAI-compatible provider for the load benchmark, on 127.0.0.1 only.

It wraps the tests' ``FakeOpenAIServer`` (the real chat-completions protocol, SSE streaming) with
realistic timing and faults drawn at random per request:

- ``normal`` mode: ~500 ms to the first token (uniform 0.3-0.7 s), then 16-character SSE pieces
  every ~30 ms; 20% of calls get 429 with ``Retry-After`` 1-5 s, 5% get 500, 2% of streams are cut
  mid-way (the connection drops without the terminating chunk).
- ``outage`` mode: every call gets 503 (no ``Retry-After``).

Control (loopback): ``GET /control/normal``, ``GET /control/outage``; ``GET /stats`` gives the
counts per outcome and the number of HTTP calls per idempotency key (one key per turn, so this is
"provider attempts per turn" as the provider saw it).

    .venv/bin/python -m bench.load.fake_provider --port 8791
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.openai_server import (
    Behaviour,
    FakeOpenAIServer,
    RecordedRequest,
    _Handler,
)

LOOPBACK = "127.0.0.1"


class FaultPolicy:
    """What a request gets, drawn at random; thread-safe."""

    def __init__(
        self,
        *,
        seed: int = 1,
        p429: float = 0.20,
        p500: float = 0.05,
        pcut: float = 0.02,
        ttft_s: tuple[float, float] = (0.3, 0.7),
        retry_after_s: tuple[int, int] = (1, 5),
    ) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.mode = "normal"
        self.p429, self.p500, self.pcut = p429, p500, pcut
        self.ttft_s = ttft_s
        self.retry_after_s = retry_after_s

    def draw(self) -> tuple[str, Behaviour]:
        with self.lock:
            roll = self.rng.random()
            ttft = self.rng.uniform(*self.ttft_s)
            error_latency = self.rng.uniform(0.05, 0.15)
            retry_after = self.rng.randint(*self.retry_after_s)
            cut_after = self.rng.randint(3, 12)
            mode = self.mode
        if mode == "outage":
            return "503", Behaviour(kind="status", status=503, delay_s=error_latency)
        if roll < self.p429:
            return "429", Behaviour(
                kind="status", status=429, retry_after=retry_after, delay_s=error_latency
            )
        if roll < self.p429 + self.p500:
            return "500", Behaviour(kind="status", status=500, delay_s=error_latency)
        if roll < self.p429 + self.p500 + self.pcut:
            return "cut", Behaviour(delay_s=ttft, cut_after_chunks=cut_after)
        return "ok", Behaviour(delay_s=ttft)


class FaultyProvider(FakeOpenAIServer):
    """``FakeOpenAIServer`` on a fixed port, answering by ``FaultPolicy``; keeps counters only
    (not every request body), so it runs for hours without growing."""

    def __init__(self, port: int, policy: FaultPolicy, chunk_delay_s: float = 0.03) -> None:
        super().__init__()
        self.port = port
        self.policy = policy
        self.chunk_delay_s = chunk_delay_s
        self.outcomes: Counter[str] = Counter()
        self.per_key: Counter[str] = Counter()
        self.mode_changes: list[tuple[float, str]] = []

    def start(self) -> FaultyProvider:
        handler = type("FaultyHandler", (_SlowHandler,), {"fake": self})
        self._httpd = ThreadingHTTPServer((LOOPBACK, self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def _receive(self, request: RecordedRequest) -> Behaviour:
        outcome, behaviour = self.policy.draw()
        key = (request.idempotency_key or "").removesuffix("-repair")
        with self._lock:
            self.outcomes[f"{self.policy.mode}:{outcome}"] += 1
            if key:
                self.per_key[key] += 1
        return behaviour

    def set_mode(self, mode: str) -> None:
        if mode not in {"normal", "outage"}:
            raise ValueError(mode)
        with self.policy.lock:
            self.policy.mode = mode
        self.mode_changes.append((time.time(), mode))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            per_turn = Counter(self.per_key.values())
            return {
                "mode": self.policy.mode,
                "outcomes": dict(self.outcomes),
                "turns": len(self.per_key),
                "attempts_per_turn": {str(k): v for k, v in sorted(per_turn.items())},
                "max_attempts_per_turn": max(self.per_key.values(), default=0),
                "mode_changes": self.mode_changes,
            }


class _SlowHandler(_Handler):
    fake: FaultyProvider

    def _write_chunk(self, data: bytes) -> None:
        self.fake._sleep(self.fake.chunk_delay_s)  # tokens arrive over time, not all at once
        super()._write_chunk(data)

    def do_GET(self) -> None:  # the stdlib's name
        path = self.path.split("?")[0]
        if path.startswith("/control/"):
            try:
                self.fake.set_mode(path.removeprefix("/control/"))
            except ValueError:
                self._send_json(404, {"error": "unknown mode"})
                return
            self._send_json(200, {"mode": self.fake.policy.mode})
        elif path == "/stats":
            self._send_json(200, self.fake.stats())
        else:
            self._send_json(404, {"error": "no route"})


def main() -> None:
    parser = argparse.ArgumentParser(description="A faulty OpenAI-compatible provider (loopback)")
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=3600, help="exit after this long")
    args = parser.parse_args()
    provider = FaultyProvider(args.port, FaultPolicy(seed=args.seed)).start()
    print(json.dumps({"url": provider.url, "mode": provider.policy.mode}), flush=True)
    try:
        time.sleep(args.max_seconds)  # bounded: never outlives a forgotten benchmark for long
    except KeyboardInterrupt:
        pass
    finally:
        provider.stop()


if __name__ == "__main__":
    main()
