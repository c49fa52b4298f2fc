"""The cross-encoder reranker with a tiny model built and saved in the test (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.providers.protocols import Candidate
from retrieval.providers.rerankers import CrossEncoderReranker

WORDS = "reset password link expire refund paid days email account the a is".split()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    BertTokenizer(str(vocab)).save_pretrained(folder)
    return folder


def _candidates() -> list[Candidate]:
    texts = ["reset password link", "refund paid days", "email account", "the link expire"]
    return [
        Candidate(chunk_id=i, document_id="d", document_title="t", text=t, page=None, heading="")
        for i, t in enumerate(texts)
    ]


def test_the_cross_encoder_loads_from_a_local_folder_and_orders_by_its_scores(tiny_cross_encoder):
    from sentence_transformers import CrossEncoder

    reranker = CrossEncoderReranker(str(tiny_cross_encoder))
    ranked = reranker.rerank("reset password", _candidates())
    raw = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict(
        [("reset password", c.text) for c in _candidates()]
    )
    expected = sorted(range(4), key=lambda i: -raw[i])
    assert [c.chunk_id for c in ranked] == expected
    assert all(0.0 < c.scores["rerank"] < 1.0 for c in ranked)


def test_candidates_beyond_the_depth_keep_their_order_below_the_reranked_ones(tiny_cross_encoder):
    ranked = CrossEncoderReranker(str(tiny_cross_encoder), depth=2).rerank("refund", _candidates())
    assert {c.chunk_id for c in ranked[:2]} == {0, 1}
    assert [c.chunk_id for c in ranked[2:]] == [2, 3]
    assert max(c.scores["rerank"] for c in ranked[2:]) < min(c.scores["rerank"] for c in ranked[:2])
