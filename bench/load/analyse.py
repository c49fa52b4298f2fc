"""Turns recorded by the locustfile + the stored messages -> the figures of ``load.json``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

FINISHED = {"answered", "escalated", "refused"}
HUNG = {"hung", "unterminated"}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 1)


def latency(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in rows if r.get(key) is not None]
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": round(max(values), 1) if values else None,
    }


def provider_attempts(message_ids: list[int]) -> dict[int, int]:
    """HTTP calls to the provider per stored answer, from the answer's trace."""
    from agent.models import Message

    found = {}
    for mid, trace in Message.objects.filter(id__in=message_ids).values_list("id", "trace"):
        attempts = (trace or {}).get("attempts", [])
        found[mid] = sum(1 for a in attempts if not str(a).startswith("extractive/"))
    return found


def analyse(
    *,
    turns_path: Path,
    phases: Any,
    marks: dict[str, Any],
    provider_stats: dict[str, Any],
    args: dict[str, Any],
) -> dict[str, Any]:
    rows = [json.loads(line) for line in turns_path.read_text().splitlines() if line.strip()]
    chat = [r for r in rows if r["kind"] == "chat" and r["phase"] != "warmup"]
    loaded = [r for r in chat if r["phase"] in {"main", "baseline", "burst"}]
    attempts = provider_attempts([r["message"] for r in rows if r.get("message")])
    for r in rows:
        r["attempts"] = attempts.get(r.get("message"))  # type: ignore[arg-type]
    outcomes = Counter(r["outcome"] for r in chat)
    ok = sum(outcomes[o] for o in FINISHED)
    main_start, main_end = phases.window("main")[0], phases.window("burst")[1]
    seconds = max(main_end - main_start, 1.0)

    outage_start = marks.get("outage_start")
    breaker_open = marks.get("breaker_open")
    degraded_after_open = [
        r
        for r in chat
        if r["phase"] == "outage"
        and breaker_open
        and r["t"] >= breaker_open
        and r["outcome"] in FINISHED
    ]
    recovery_start = marks.get("recovery_start")
    first_healthy = min(
        (
            r["t"] + r["total_ms"] / 1000
            for r in chat
            if r["phase"] == "recovery" and r["outcome"] == "answered" and not r.get("degraded")
        ),
        default=None,
    )
    baseline = [r for r in chat if r["phase"] == "baseline"]
    burst = [r for r in chat if r["phase"] == "burst"]
    burster = [r for r in rows if r["kind"] == "burst"]
    base_p95, burst_p95 = latency(baseline, "total_ms")["p95"], latency(burst, "total_ms")["p95"]
    max_attempts = max((r["attempts"] or 0 for r in rows), default=0)
    result = {
        "user_5xx": sum(1 for r in rows if r["status"] >= 500),
        "turns": len(chat),
        "turns_ok_fraction": round(ok / len(chat), 4) if chat else None,
        "outcomes": dict(outcomes),
        "ttft_p50_ms": latency(loaded, "ttft_ms")["p50"],
        "ttft_p95_ms": latency(loaded, "ttft_ms")["p95"],
        "ttft_p99_ms": latency(loaded, "ttft_ms")["p99"],
        "latency_ms": latency(loaded, "total_ms"),
        "ttft_ms": latency(loaded, "ttft_ms"),
        "requests_per_s": round(len(loaded) / seconds, 2),
        "error_rate": round(sum(1 for r in loaded if r["outcome"] not in FINISHED) / len(loaded), 4)
        if loaded
        else None,
        "degraded_fraction_under_faults": round(
            sum(1 for r in loaded if r.get("degraded")) / len(loaded), 4
        )
        if loaded
        else None,
        "max_attempts_per_turn": max_attempts,
        "attempts_per_turn": dict(Counter(str(r["attempts"]) for r in rows if r.get("message"))),
        "hung_streams": sum(1 for r in rows if r["outcome"] in HUNG),
        "breaker_open_s": round(breaker_open - outage_start, 2)
        if breaker_open and outage_start
        else None,
        "degraded_p95_ms": latency(degraded_after_open, "total_ms")["p95"],
        "degraded_during_outage": latency(degraded_after_open, "total_ms"),
        "outage_outcomes": dict(Counter(r["outcome"] for r in chat if r["phase"] == "outage")),
        "breaker_closed_after_outage_s": round(marks["breaker_closed"] - recovery_start, 2)
        if marks.get("breaker_closed") and recovery_start
        else None,
        "first_healthy_answer_after_outage_s": round(first_healthy - recovery_start, 2)
        if first_healthy and recovery_start
        else None,
        "burst": {
            "burst_account_turns": len(burster),
            "burst_account_429": sum(1 for r in burster if r["status"] == 429),
            "burst_account_answered": sum(1 for r in burster if r["outcome"] in FINISHED),
            "others_p95_baseline_ms": base_p95,
            "others_p95_burst_ms": burst_p95,
            "others_p95_rise": round(burst_p95 / base_p95 - 1, 3)
            if base_p95 and burst_p95
            else None,
            "others_ttft_p95_baseline_ms": latency(baseline, "ttft_ms")["p95"],
            "others_ttft_p95_burst_ms": latency(burst, "ttft_ms")["p95"],
        },
        "phases": {name: [round(s, 1), round(e, 1)] for name, s, e in phases.bounds},
        "per_phase": {
            name: {
                "turns": sum(1 for r in chat if r["phase"] == name),
                "outcomes": dict(Counter(r["outcome"] for r in chat if r["phase"] == name)),
                "ttft_ms": latency([r for r in chat if r["phase"] == name], "ttft_ms"),
                "latency_ms": latency([r for r in chat if r["phase"] == name], "total_ms"),
            }
            for name, _, _ in phases.bounds
            if name != "warmup"
        },
        "provider": provider_stats,
        "load_average_during": marks.get("loads"),
        "config": args,
        "errors_sample": [r.get("error") for r in rows if r.get("error")][:10],
    }
    return result
