from __future__ import annotations

from retrieval.pipeline.fuse import reciprocal_rank_fusion
from retrieval.pipeline.text import is_statement, split_sentences, tokenize


def test_an_item_ranked_well_by_both_retrievers_beats_one_ranked_first_by_only_one():
    fused = reciprocal_rank_fusion({"dense": [1, 2, 3], "bm25": [2, 4, 1]}, k=60)
    assert [item for item, _ in fused][:2] == [2, 1]


def test_fusion_scores_follow_the_rrf_formula():
    fused = dict(reciprocal_rank_fusion({"a": [7], "b": [8, 7]}, k=10))
    assert fused[7] == 1 / 11 + 1 / 12
    assert fused[8] == 1 / 11


def test_fusion_weights_scale_each_ranking():
    fused = reciprocal_rank_fusion({"a": [1], "b": [2]}, k=60, weights={"a": 1.0, "b": 2.0})
    assert [item for item, _ in fused] == [2, 1]


def test_ties_keep_first_seen_order():
    fused = reciprocal_rank_fusion({"a": [5, 6], "b": [6, 5]}, k=60)
    assert [item for item, _ in fused] == [5, 6]


def test_tokenize_drops_stop_words_and_keeps_non_latin_scripts():
    assert tokenize("How do I reset the password?") == ["reset", "password"]
    assert tokenize("비밀번호 재설정") == ["비밀번호", "재설정"]


def test_split_sentences_splits_on_sentence_ends_and_on_lines():
    text = "Refunds\nReset links expire after 30 minutes. Yes!\n\n- Open the page\nLast line"
    assert split_sentences(text) == [
        "Refunds",
        "Reset links expire after 30 minutes.",
        "Yes!",
        "- Open the page",
        "Last line",
    ]


def test_headings_and_labels_are_not_statements():
    assert not is_statement("Export formats")
    assert not is_statement("## Refunds")
    assert is_statement("Yes.")
    assert is_statement("- Open the sign-in page and choose Forgot password")
