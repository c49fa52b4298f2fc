"""The fallback chain: each model of a route in turn, behind its circuit breaker, within the
turn's attempt cap and deadline."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from agent.providers.protocols import Attempt, ChatModel, ChatRequest, ChatResult, Prompt
from agent.providers.registry import chat_models
from agent.services.breaker import breaker_allow, breaker_record
from agent.services.usage import cost_usd
from ragapp.errors import ProviderError
from ragapp.tracing import span_record

logger = logging.getLogger(__name__)

# Reply problems: the provider is up, so they do not count against its circuit breaker.
REPLY_CODES = frozenset({"malformed_json", "truncated", "refusal", "empty"})


def _is_local(model: Any) -> bool:
    return bool(getattr(model, "local", False))


def chain_eligible(
    request: ChatRequest, *, route: str, attempts: list[Attempt], skipped: list[str]
) -> Iterator[tuple[int, ChatModel, ChatRequest]]:
    """The route's fallback chain as (position, model, request for it), skipping models whose
    circuit breaker is open and remote models once the turn's attempt cap or deadline is spent.
    A local model (the extractive answerer) always runs. ``attempts`` is read as it grows."""
    for position, model in enumerate(chat_models(route)):
        if _is_local(model):
            yield position, model, request
            continue
        left = request.max_attempts - len(attempts) if request.max_attempts else 0
        name = f"{model.provider}/{model.model}"
        if request.max_attempts and left <= 0:
            skipped.append(f"{name}: attempt cap")
        elif request.deadline and time.monotonic() >= request.deadline:
            skipped.append(f"{name}: turn deadline")
        elif not breaker_allow(provider=model.provider, model=model.model):
            skipped.append(f"{name}: circuit open")
        else:
            yield position, model, replace(request, max_attempts=left)


def chain_record(model: ChatModel, *, error: ProviderError | None = None) -> None:
    """Tell the model's circuit breaker how the call went (reply problems mean it is up)."""
    if _is_local(model):
        return
    ok = error is None or error.code in REPLY_CODES
    breaker_record(
        provider=model.provider, model=model.model, ok=ok, code=error.code if error else ""
    )
    if error is not None:
        logger.warning(
            "chat model failed; falling back",
            extra={"provider": model.provider, "model": model.model, "code": error.code},
        )


def generate(
    request: ChatRequest, *, route: str = "", trace: dict[str, Any] | None = None
) -> tuple[ChatResult | None, list[Attempt], bool]:
    """Try each model of the route's fallback chain; returns (result, all attempts, degraded)."""
    attempts: list[Attempt] = []
    skipped: list[str] = []
    started = time.perf_counter()
    result = None
    degraded = True
    for position, model, call in chain_eligible(
        request, route=route, attempts=attempts, skipped=skipped
    ):
        try:
            result = model.generate(call)
        except ProviderError as exc:
            attempts.extend(exc.extra.get("attempts", []))
            chain_record(model, error=exc)
            continue
        attempts.extend(result.attempts)
        chain_record(model)
        degraded = position > 0
        break
    trace_generation(
        trace, started=started, attempts=attempts, skipped=skipped, prompt=request.prompt
    )
    return result, attempts, degraded


def trace_generation(
    trace: dict[str, Any] | None,
    *,
    started: float,
    attempts: list[Attempt],
    skipped: list[str],
    prompt: Prompt,
) -> None:
    """Record the generation in the message's trace dict and as spans: ``ragapp.answer.generate``
    with one ``ragapp.llm.attempt`` child per provider call, each at the time it ran."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    if trace is not None:
        trace["generate_ms"] = round(elapsed_ms, 1)
        trace["provider_ms"] = sum(a.latency_ms for a in attempts if a.provider != "extractive")
        trace["attempts"] = [f"{a.provider}/{a.model}:{a.error_code or 'ok'}" for a in attempts]
        if skipped:
            trace["skipped"] = skipped
    end_ns = time.time_ns()
    generation = span_record(
        "ragapp.answer.generate",
        start_ns=end_ns - int(elapsed_ms * 1e6),
        end_ns=end_ns,
        error="" if attempts and not attempts[-1].error_code else "the last attempt failed",
        attempts=len(attempts),
        skipped=skipped or None,
    )
    for number, attempt in enumerate(attempts, start=1):
        tokens_in, tokens_out = attempt.usage.input_tokens, attempt.usage.output_tokens
        span_record(
            "ragapp.llm.attempt",
            start_ns=attempt.ended_ns - attempt.latency_ms * 1_000_000,
            end_ns=attempt.ended_ns,
            error=attempt.error_code,
            parent=generation,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": attempt.provider,
                "gen_ai.request.model": attempt.model,
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
            },
            provider=attempt.provider,
            model=attempt.model,
            attempt=number,
            outcome=attempt.error_code or "ok",
            tokens_estimated=attempt.usage.estimated,
            cost_usd=float(cost_usd(attempt.model, tokens_in, tokens_out)),
            latency_ms=attempt.latency_ms,
            prompt_id=prompt.id,
            prompt_version=prompt.version,
            prompt_hash=prompt.hash,
        )
