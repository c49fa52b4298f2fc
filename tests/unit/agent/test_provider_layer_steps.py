"""Pure steps of the provider layer: citation support, gate, router, context budget, follow-up
rewrite, the streamed-claim scanner and cache keys. No database, no network, no model."""

from __future__ import annotations

import pytest

from agent.pipeline.context import chars_count, context_fit, history_compact, query_rewrite
from agent.pipeline.gate import gate_decide
from agent.pipeline.route import route_decide
from agent.pipeline.schema import AnswerOut, ClaimOut
from agent.pipeline.validate import citations_validate, support_scores, word_overlap
from agent.providers.openai import _ClaimScanner
from agent.providers.protocols import Passage, StreamHead, Turn
from agent.services.cache import question_normalise
from tests.unit.agent.test_answer_steps import bag_of_words

RESET = "A password reset link is valid for 30 minutes. After that, request a new one."


def passage(number: int, text: str, score: float = 0.5) -> Passage:
    return Passage(number, 100 + number, text, f"Doc {number}", None, "", score)


def validate(*claims: ClaimOut, passages: list[Passage]):  # type: ignore[no-untyped-def]
    answer = AnswerOut(decision="answer", confidence=0.9, claims=list(claims))
    return citations_validate(answer, passages=passages, embed=bag_of_words, support_min=0.5)


# --- citation support ----------------------------------------------------------------------------


def test_a_claim_restating_its_passage_is_supported():
    validated = validate(
        ClaimOut(text="Password reset links are valid for 30 minutes.", passages=[1]),
        passages=[passage(1, RESET)],
    )
    assert len(validated.claims) == 1 and not validated.removed
    assert validated.support[0] >= 0.5


def test_a_claim_with_a_figure_the_passage_does_not_state_is_unsupported():
    scores = support_scores(
        "Password reset links are valid for 45 minutes.", [passage(1, RESET)], bag_of_words
    )
    assert scores == {1: 0.0}


def test_a_claim_about_something_else_is_removed_as_unsupported_with_its_score():
    validated = validate(
        ClaimOut(text="Call our hotline for a free upgrade.", passages=[1]),
        passages=[passage(1, RESET)],
    )
    assert validated.claims == []
    [removed] = validated.removed
    assert removed.reason == "unsupported" and removed.score is not None and removed.score < 0.5
    assert validated.unsupported_share == 1.0


def test_a_claim_keeps_only_the_citations_that_support_it():
    validated = validate(
        ClaimOut(text="Password reset links are valid for 30 minutes.", passages=[2, 1]),
        passages=[passage(1, RESET), passage(2, "The Pro plan costs $8 per month.")],
    )
    assert validated.claims[0].passages == [1]


def test_a_claim_quoting_a_sentence_of_its_passage_is_supported_without_an_embedding():
    def no_model(texts):  # type: ignore[no-untyped-def]
        raise AssertionError(f"embedded {texts}")

    answer = AnswerOut(
        decision="answer",
        confidence=0.9,
        claims=[ClaimOut(text="A password reset link is valid  for 30 minutes.", passages=[1])],
    )
    validated = citations_validate(
        answer, passages=[passage(1, RESET)], embed=no_model, support_min=0.5
    )
    assert validated.support == [1.0] and validated.claims[0].passages == [1]


def test_the_claims_of_an_answer_are_embedded_in_one_call_and_scored_as_one_by_one():
    calls = []

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(list(texts))
        return bag_of_words(texts)

    claims = [
        ClaimOut(text="Reset links are valid for 30 minutes.", passages=[1]),
        ClaimOut(text="Request a new link after that.", passages=[1, 2]),
        ClaimOut(text="Call our hotline for a free upgrade.", passages=[2]),
    ]
    passages = [passage(1, RESET), passage(2, "The Pro plan costs $8 per month.")]

    answer = AnswerOut(decision="answer", confidence=0.9, claims=claims)
    batched = citations_validate(answer, passages=passages, embed=counting, support_min=0.5)

    assert len(calls) == 1
    one_by_one = [
        support_scores(c.text, [passages[n - 1] for n in c.passages], bag_of_words) for c in claims
    ]
    assert batched.support == [max(s.values()) for s in one_by_one[:2]]
    assert [r.score for r in batched.removed] == [max(one_by_one[2].values())]


def test_word_overlap_ignores_stop_words_and_simple_inflections():
    assert word_overlap("The links expire", "a link expired") == 1.0
    assert word_overlap("the of and", "anything") == 1.0


# --- gate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("share", "has_claims", "expected"),
    [
        (0.0, True, "answered"),
        (0.5, True, "answered"),
        (0.6, True, "escalated"),
        (1.0, False, "escalated"),
    ],
)
def test_too_many_unsupported_claims_escalate_the_answer(share, has_claims, expected):
    decision = gate_decide(
        model_decision="answer",
        confidence=0.9,
        has_claims=has_claims,
        answer_at=0.45,
        escalate_at=0.3,
        unsupported_share=share,
        max_unsupported=0.5,
    )
    assert decision == expected


# --- router --------------------------------------------------------------------------------------


def route(question: str, *, depth: int = 0, titles: list[str] | None = None):  # type: ignore[no-untyped-def]
    titles = titles or ["A"]
    passages = [passage(i + 1, "text", score=0.9) for i in range(len(titles))]
    return route_decide(
        question=question,
        passages=passages,
        document_titles=titles,
        depth=depth,
        max_words=25,
        max_depth=4,
        max_documents=3,
    )


def test_a_short_single_topic_question_is_easy():
    assert route("How long is a reset link valid?").route == "easy"


@pytest.mark.parametrize(
    ("question", "kwargs", "reason"),
    [
        ("word " * 30, {}, "long question"),
        ("How long?", {"depth": 4}, "deep conversation"),
        ("Why is the Pro plan different?", {}, "asks for reasoning"),
        ("Plans?", {"titles": ["A", "B", "C"]}, "needs passages from 3 documents"),
    ],
)
def test_hard_questions_go_to_the_flagship_with_the_reason(question, kwargs, reason):
    decision = route(question, **kwargs)
    assert decision.route == "hard" and decision.reason.startswith(reason)


# --- context budget and follow-ups ---------------------------------------------------------------


def test_passages_are_kept_in_rank_order_until_the_window_is_full():
    passages = [passage(i, "x" * 400) for i in range(1, 6)]  # 100 tokens each by chars/4
    fitted = context_fit(
        fixed="q" * 40,
        passages=passages,
        history=[],
        window=600,
        reserve=200,
        count=chars_count,
        verbatim_turns=4,
    )
    assert [p.number for p in fitted.passages] == [1, 2, 3]
    assert fitted.dropped_passages == 2 and fitted.tokens <= 400


def test_the_best_passage_is_kept_even_when_it_alone_is_too_long():
    fitted = context_fit(
        fixed="",
        passages=[passage(1, "x" * 4000)],
        history=[],
        window=100,
        reserve=50,
        count=chars_count,
        verbatim_turns=4,
    )
    assert len(fitted.passages) == 1


def test_older_turns_are_summarised_and_recent_ones_kept_verbatim():
    history = [Turn("user", f"Question {i}? More.") for i in range(6)]
    compacted, summarised = history_compact(history, verbatim=2)
    assert summarised == 4
    assert compacted[0].role == "summary" and "Question 0?" in compacted[0].text
    assert [t.text for t in compacted[1:]] == ["Question 4? More.", "Question 5? More."]


def test_a_follow_up_is_rewritten_with_the_previous_questions_topic():
    history = [Turn("user", "How much does the Pro plan cost?"), Turn("assistant", "$8. [1]")]
    assert query_rewrite("What about annual billing?", history) == (
        "What about annual billing? (much pro plan cost)"
    )
    assert query_rewrite("How do I enable two-factor login?", history) == (
        "How do I enable two-factor login?"
    )
    assert query_rewrite("What about it?", []) == "What about it?"


# --- streamed claims -----------------------------------------------------------------------------


def test_the_scanner_yields_the_head_then_each_claim_once_its_object_is_complete():
    text = (
        '{"decision": "answer", "confidence": 0.8, "claims": [{"text": "One [x].", '
        '"passages": [1]}, {"text": "Two, with a } brace.", "passages": [2]}]}'
    )
    scanner = _ClaimScanner()
    events = []
    for start in range(0, len(text), 7):
        events.extend(scanner.feed(text[start : start + 7]))
    assert events == [
        StreamHead("answer", 0.8),
        ClaimOut(text="One [x].", passages=[1]),
        ClaimOut(text="Two, with a } brace.", passages=[2]),
    ]


# --- cache keys ----------------------------------------------------------------------------------


def test_questions_differing_only_in_case_spacing_and_final_punctuation_share_a_key():
    assert question_normalise("  How LONG is a  link valid?? ") == "how long is a link valid"
