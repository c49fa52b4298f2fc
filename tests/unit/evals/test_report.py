from __future__ import annotations

import json

import pytest

from evals.cases import Case
from evals.corpus import Corpus
from evals.graders import NOT_APPLICABLE, Grade, Reply
from evals.report import (
    comparison_render,
    failures_render,
    run_json,
    scores_compute,
    table_render,
    thresholds_check,
    thresholds_load,
)
from evals.runner import CaseResult, SuiteRun

PASS, FAIL = Grade(passed=True), Grade(passed=False, reasons=("nope",))


def result(
    case_id: str, category: str, *, assertion=PASS, reference=PASS, retrieval=PASS, text="A. [1]"
):  # type: ignore[no-untyped-def]
    case = Case(id=case_id, category=category, question=f"{case_id}?", expect="answered")
    retrieval = (
        Grade(
            passed=retrieval.passed,
            detail={
                "rank": 1 if retrieval.passed else None,
                "evidence_retrieved": bool(retrieval.passed),
                "k": 5,
            },
        )
        if retrieval.passed is not None
        else retrieval
    )
    return CaseResult(
        case=case,
        grades={
            "assertion": assertion,
            "reference": reference,
            "retrieval": retrieval,
            "judge": NOT_APPLICABLE,
        },
        reply=Reply(text=text, decision="answered", citations=[], prompt_stamp="p@1"),
        model="extractive",
    )


def suite(*results: CaseResult, ref: str = "p@1") -> SuiteRun:
    return SuiteRun(
        prompt_ref=ref,
        prompt_hash="0" * 64,
        results=list(results),
        corpus=Corpus(),
        versions={"answerable": 1, "unanswerable": 1},
    )


RUN = suite(
    result("a1", "answerable"),
    result("a2", "answerable", reference=FAIL, retrieval=FAIL),
    result(
        "u1", "unanswerable", assertion=FAIL, reference=NOT_APPLICABLE, retrieval=NOT_APPLICABLE
    ),
)


def test_scores_are_pass_rates_over_the_cases_each_grader_applies_to():
    scores = scores_compute(RUN)
    assert scores["assertion"]["pass_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert scores["reference"]["total"] == 2 and scores["reference"]["passed"] == 1
    assert scores["retrieval"]["recall_at_k"] == 0.5 and scores["retrieval"]["mrr"] == 0.5
    assert scores["assertion"]["by_category"]["unanswerable"]["pass_rate"] == 0.0
    assert "judge" not in scores  # no judge configured


def test_the_table_has_a_row_per_category_a_total_and_the_thresholds():
    table = table_render(RUN, scores_compute(RUN), {"assertion": 0.6})
    lines = table.splitlines()
    assert lines[0].split()[:5] == ["category", "cases", "assertion", "reference", "retrieval"]
    assert lines[1].startswith("answerable") and "1/2  50.0%" in lines[1]
    assert lines[-2].startswith("all") and "2/3  66.7%" in lines[-2]
    assert lines[-1].split() == ["threshold", "0.600", "-", "-"]


def test_a_pass_rate_below_its_threshold_is_reported_and_an_absent_grader_is_not_checked():
    scores = scores_compute(RUN)
    assert thresholds_check(scores, {"assertion": 0.6, "retrieval": 0.5}) == []
    assert thresholds_check(scores, {"retrieval": 0.9}) == [
        "retrieval pass rate 0.500 is below the threshold 0.900"
    ]
    assert thresholds_check({"reference": {"pass_rate": None}}, {"reference": 1.0}) == []


def test_failing_cases_say_which_half_broke():
    text = failures_render(RUN)
    assert "a2 [answerable] broke in retrieval" in text
    assert "u1 [unanswerable] broke in generation" in text
    assert "a1 " not in text


def test_the_comparison_lists_only_the_cases_that_differ():
    other = suite(
        result("a1", "answerable", text="B. [1]"),
        result("a2", "answerable", reference=FAIL, retrieval=FAIL),
        result("u1", "unanswerable", reference=NOT_APPLICABLE, retrieval=NOT_APPLICABLE),
        ref="p@2",
    )
    text = comparison_render(RUN, other)
    assert "a1: answer text changed" in text
    assert "u1: assertion FAIL -> pass" in text
    assert "a2" not in text.split("cases that differ")[1]
    assert "+33.3pp" in text


def test_the_json_holds_pass_rates_thresholds_and_failing_cases():
    data = json.loads(json.dumps(run_json(RUN, {"assertion": 0.9})))
    assert data["scores"]["assertion"]["pass_rate"] == pytest.approx(0.6667)
    assert data["thresholds"] == {"assertion": 0.9} and data["passed"] is False
    assert data["failing_cases"] == ["a2", "u1"]


def test_thresholds_may_only_name_gated_graders(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"min_pass_rate": {"judge": 0.5}}))
    with pytest.raises(ValueError, match="judge"):
        thresholds_load(path)


def test_the_stored_thresholds_cover_the_three_gated_graders():
    assert set(thresholds_load()) == {"assertion", "reference", "retrieval"}


def test_the_judge_is_scored_with_its_agreement_with_the_assertion_grader():
    agree, disagree = result("a1", "answerable"), result("a2", "answerable", assertion=FAIL)
    agree.grades["judge"] = PASS
    disagree.grades["judge"] = PASS
    scores = scores_compute(suite(agree, disagree))
    assert scores["judge"]["pass_rate"] == 1.0
    assert scores["judge"]["agreement_with_assertion"] == 0.5
