"""The embedder is chosen by settings, and each kind names its vectors apart."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from retrieval.checks import retrieval_provider_settings
from retrieval.providers.registry import embedder


@pytest.fixture
def fresh_embedder():  # type: ignore[no-untyped-def]
    embedder.cache_clear()
    yield embedder
    embedder.cache_clear()


def test_the_embedder_kind_comes_from_settings_and_onnx_vectors_carry_another_name(
    settings, fresh_embedder
):
    settings.RAGAPP_EMBEDDER = "torch"
    torch = fresh_embedder()
    fresh_embedder.cache_clear()
    settings.RAGAPP_EMBEDDER = "onnx"
    onnx = fresh_embedder()

    assert type(torch).__name__ == "SentenceTransformerEmbedder"
    assert type(onnx).__name__ == "OnnxInt8Embedder"
    assert torch.name != onnx.name
    model, digest = torch.name.split("@")
    assert onnx.name == f"{model}-onnx-int8@{digest}"  # same weights, another runtime
    assert not onnx.loaded  # constructing it exports and loads nothing


def test_both_kinds_count_tokens_alike_without_loading_a_model(settings, fresh_embedder):
    text = "Password reset links expire after thirty minutes; request a new one afterwards."
    counts = []
    for kind in ("torch", "onnx"):
        fresh_embedder.cache_clear()
        settings.RAGAPP_EMBEDDER = kind
        emb = fresh_embedder()
        counts.append(emb.count_tokens(text))
        assert not emb.loaded
    assert counts[0] == counts[1] > 10


def test_an_unknown_embedder_kind_fails_the_system_check_and_the_registry(settings, fresh_embedder):
    settings.RAGAPP_EMBEDDER = "tensorflow"

    errors = retrieval_provider_settings(None)

    assert [e.id for e in errors] == ["retrieval.E001"]
    assert "'tensorflow'" in errors[0].msg and "onnx, torch" in errors[0].msg
    with pytest.raises(ImproperlyConfigured):
        fresh_embedder()
