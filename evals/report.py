"""Scores, threshold checks, the printed table, the per-case comparison and ``eval.json``.

Pure functions over ``SuiteRun``s: no ORM, no network.
"""

from __future__ import annotations

import json
from pathlib import Path

from evals.runner import GRADERS, CaseResult, SuiteRun

THRESHOLDS_PATH = Path(__file__).resolve().parent / "thresholds.json"
GATED_GRADERS = ("assertion", "reference", "retrieval")  # the judge is reported, never gated on


def thresholds_load(path: Path = THRESHOLDS_PATH) -> dict[str, float]:
    """``{grader: minimum pass rate}``; only the gated graders may appear."""
    data = json.loads(path.read_text(encoding="utf-8"))
    minimums = data.get("min_pass_rate", {})
    unknown = set(minimums) - set(GATED_GRADERS)
    if unknown:
        raise ValueError(f"{path.name}: unknown grader(s) {sorted(unknown)}")
    return {name: float(value) for name, value in minimums.items()}


def _rate(results: list[CaseResult], grader: str) -> dict:  # type: ignore[type-arg]
    graded = [
        r.grades[grader].passed
        for r in results
        if not r.skipped and grader in r.grades and r.grades[grader].passed is not None
    ]
    passed = sum(1 for p in graded if p)
    return {
        "passed": passed,
        "total": len(graded),
        "pass_rate": round(passed / len(graded), 4) if graded else None,
    }


def categories(run: SuiteRun) -> list[str]:
    return list(dict.fromkeys(r.case.category for r in run.results))


def scores_compute(run: SuiteRun) -> dict[str, dict]:  # type: ignore[type-arg]
    """``{grader: {pass_rate, passed, total, by_category}}`` plus grader-specific figures."""
    scores: dict[str, dict] = {}  # type: ignore[type-arg]
    for grader in GRADERS:
        overall = _rate(run.results, grader)
        if grader == "judge" and not overall["total"]:
            continue  # no judge model configured
        overall["by_category"] = {
            cat: _rate([r for r in run.results if r.case.category == cat], grader)
            for cat in categories(run)
        }
        scores[grader] = overall
    ranked = [
        r.grades["retrieval"].detail
        for r in run.results
        if not r.skipped and r.grades.get("retrieval") and r.grades["retrieval"].passed is not None
    ]
    if ranked:
        scores["retrieval"]["k"] = max(d["k"] for d in ranked)
        scores["retrieval"]["recall_at_k"] = scores["retrieval"]["pass_rate"]
        scores["retrieval"]["mrr"] = round(
            sum(1 / d["rank"] for d in ranked if d["rank"]) / len(ranked), 4
        )
        scores["retrieval"]["evidence_recall"] = round(
            sum(1 for d in ranked if d["evidence_retrieved"]) / len(ranked), 4
        )
    if "judge" in scores:
        pairs = [
            (r.grades["judge"].passed, r.grades["assertion"].passed)
            for r in run.results
            if not r.skipped and r.grades.get("judge") and r.grades["judge"].passed is not None
        ]
        agree = sum(1 for j, a in pairs if j == a)
        scores["judge"]["agreement_with_assertion"] = round(agree / len(pairs), 4)
    return scores


def thresholds_check(scores: dict, thresholds: dict[str, float]) -> list[str]:  # type: ignore[type-arg]
    """One line per grader below its threshold; graders with no graded case are not checked."""
    below = []
    for grader, minimum in thresholds.items():
        rate = scores.get(grader, {}).get("pass_rate")
        if rate is not None and rate < minimum:
            below.append(f"{grader} pass rate {rate:.3f} is below the threshold {minimum:.3f}")
    return below


def _cell(rate: dict) -> str:  # type: ignore[type-arg]
    if not rate["total"]:
        return "-"
    return f"{rate['passed']}/{rate['total']} {100 * rate['pass_rate']:5.1f}%"


def table_render(run: SuiteRun, scores: dict, thresholds: dict[str, float]) -> str:  # type: ignore[type-arg]
    """Pass rates per grader (columns) and category (rows), then the thresholds."""
    graders = [g for g in GRADERS if g in scores]
    width = max([len("category"), *(len(c) for c in categories(run))]) + 2
    lines = [f"{'category':<{width}}{'cases':>6}  " + "".join(f"{g:>16}" for g in graders)]
    for cat in categories(run):
        in_cat = [r for r in run.results if r.case.category == cat]
        ran = sum(1 for r in in_cat if not r.skipped)
        cells = "".join(f"{_cell(scores[g]['by_category'][cat]):>16}" for g in graders)
        count = f"{ran}" if ran == len(in_cat) else f"{ran}/{len(in_cat)}"
        lines.append(f"{cat:<{width}}{count:>6}  {cells}")
    ran = sum(1 for r in run.results if not r.skipped)
    lines.append(
        f"{'all':<{width}}{ran:>6}  " + "".join(f"{_cell(scores[g]):>16}" for g in graders)
    )
    limits = "".join(
        f"{(format(thresholds[g], '.3f') if g in thresholds else '-'):>16}" for g in graders
    )
    lines.append(f"{'threshold':<{width}}{'':>6}  {limits}")
    return "\n".join(lines)


def header_render(run: SuiteRun) -> str:
    versions = ", ".join(f"{cat} v{v}" for cat, v in run.versions.items())
    models = ", ".join(run.chat_models) or "none"
    judge = run.judge_model or "off (no OPENAI_API_KEY / OPENAI_BASE_URL)"
    lines = [
        f"prompt {run.prompt_ref} ({run.prompt_hash[:12]}) · chat model {models} · judge {judge}",
        f"golden set: {versions}",
        f"ingested {len(run.corpus.files_by_document)} documents in {run.corpus.seconds:.0f}s; "
        f"ran {len(run.results)} cases in {run.seconds:.0f}s",
    ]
    if models == "extractive":
        lines.append(
            "note: the extractive default ignores the prompt text; the prompt only stamps answers"
        )
    for name, reason in run.corpus.unavailable.items():
        skipped = sum(1 for r in run.results if r.case.collection == name)
        lines.append(f"skipped {skipped} case(s) of collection {name!r}: {reason}")
    for file, error in run.corpus.failed:
        lines.append(f"ingestion failed for {file}: {error}")
    return "\n".join(lines)


def failures_render(run: SuiteRun) -> str:
    """Every failing case with the graders it failed, their reasons, and the broken half."""
    lines = []
    for r in run.results:
        failed = [g for g in GRADERS if r.failed(g)]
        if not failed:
            continue
        lines.append(f"  {r.case.id} [{r.case.category}] broke in {r.diagnosis}: {r.case.question}")
        for g in failed:
            lines.append(f"      {g}: {'; '.join(r.grades[g].reasons)[:300]}")
    if not lines:
        return "no failing cases"
    return f"failing cases ({sum(1 for r in run.results if r.diagnosis)}):\n" + "\n".join(lines)


def comparison_render(a: SuiteRun, b: SuiteRun) -> str:
    """Pass rates side by side, then every case whose decision, text or grades differ."""
    sa, sb = scores_compute(a), scores_compute(b)
    lines = [f"{'grader':<12}{a.prompt_ref:>22}{b.prompt_ref:>22}{'change':>10}"]
    for g in GRADERS:
        if g not in sa and g not in sb:
            continue
        ra, rb = sa.get(g, {}).get("pass_rate"), sb.get(g, {}).get("pass_rate")
        delta = f"{100 * (rb - ra):+.1f}pp" if ra is not None and rb is not None else "-"
        cells = [_cell(s[g]) if g in s else "-" for s in (sa, sb)]
        lines.append(f"{g:<12}{cells[0]:>22}{cells[1]:>22}{delta:>10}")
    changed = []
    for ra, rb in zip(a.results, b.results, strict=True):
        diffs = []
        for g in GRADERS:
            pa, pb = (r.grades.get(g).passed if r.grades.get(g) else None for r in (ra, rb))
            if pa != pb:
                diffs.append(f"{g} {_verdict(pa)} -> {_verdict(pb)}")
        if ra.reply and rb.reply:
            if ra.reply.decision != rb.reply.decision:
                diffs.append(f"decision {ra.reply.decision} -> {rb.reply.decision}")
            elif ra.reply.text != rb.reply.text:
                diffs.append("answer text changed")
        if diffs:
            changed.append(f"  {ra.case.id}: {'; '.join(diffs)}")
    lines.append(
        f"cases that differ ({len(changed)} of {len(a.results)}):"
        if changed
        else f"no case differs between {a.prompt_ref} and {b.prompt_ref} ({len(a.results)} cases)"
    )
    return "\n".join(lines + changed)


def _verdict(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "n/a"}[passed]


def case_json(r: CaseResult) -> dict:  # type: ignore[type-arg]
    return {
        "id": r.case.id,
        "category": r.case.category,
        "question": r.case.question,
        "skipped": r.skipped,
        "decision": r.reply.decision if r.reply else None,
        "answer": r.reply.text if r.reply else None,
        "cited_files": sorted({c.get("document_title", "") for c in r.reply.citations})
        if r.reply
        else [],
        "retrieved_files": r.retrieved_files,
        "diagnosis": r.diagnosis,
        "seconds": round(r.seconds, 3),
        "grades": {
            g: {"passed": grade.passed, "reasons": list(grade.reasons), **grade.detail}
            for g, grade in r.grades.items()
        },
    }


def run_json(run: SuiteRun, thresholds: dict[str, float]) -> dict:  # type: ignore[type-arg]
    scores = scores_compute(run)
    below = thresholds_check(scores, thresholds)
    return {
        "prompt": run.prompt_ref,
        "prompt_hash": run.prompt_hash,
        "chat_models": run.chat_models,
        "judge_model": run.judge_model or None,
        "golden_set": run.versions,
        "cases": len(run.results),
        "skipped": {r.case.id: r.skipped for r in run.results if r.skipped},
        "seconds": round(run.seconds, 2),
        "scores": scores,
        "thresholds": thresholds,
        "below_threshold": below,
        "passed": not below,
        "failing_cases": [r.case.id for r in run.results if r.diagnosis],
        "results": [case_json(r) for r in run.results],
    }
