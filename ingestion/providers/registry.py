"""Builds the instruction classifier named in settings, once per process."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ingestion.pipeline.injection import classifier_pieces, classifier_reason
from ingestion.providers.protocols import InstructionClassifier

logger = logging.getLogger(__name__)


@cache
def instruction_classifier() -> InstructionClassifier | None:
    """``RAGAPP_INSTRUCTION_CLASSIFIER``: "neighbours" (the default) or "off" (rules alone). The
    reference vectors belong to the model that made them: with another embedder model they mean
    nothing, so the classifier is off (logged)."""
    kind = settings.RAGAPP_INSTRUCTION_CLASSIFIER
    if kind == "off":
        return None
    if kind != "neighbours":
        raise ImproperlyConfigured(f"unknown RAGAPP_INSTRUCTION_CLASSIFIER {kind!r}")
    from ingestion.providers.neighbours import NeighbourInstructionClassifier, meta_load
    from retrieval.providers.registry import embedder

    meta = meta_load()
    emb = embedder()
    if not emb.name.startswith(meta["embedder_model"]):
        logger.warning(
            "instruction classifier off: trained on %s, the embedder is %s",
            meta["embedder_model"],
            emb.name,
        )
        return None
    return NeighbourInstructionClassifier(
        emb, meta, threshold=settings.RAGAPP_INSTRUCTION_CLASSIFIER_THRESHOLD
    )


def instruction_classifier_load() -> None:
    """Load the classifier's references and the language model it needs now (at start-up)
    rather than on the first chunk or answer (langid takes about 1.4 s)."""
    from ingestion.pipeline.language import english

    if instruction_classifier() is not None:
        english("warm up the language model")


def instructions_find(texts: Sequence[str]) -> list[dict[str, str]]:
    """For each text, the pieces the classifier judges instructions for the model (whitespace
    folded, as ``classifier_pieces`` gives them) with a reason; empty when it is off. All the
    texts' pieces are scored in one call."""
    classifier = instruction_classifier()
    per_text = [classifier_pieces(t) for t in texts] if classifier else [[] for _ in texts]
    flat = list(dict.fromkeys(p for found in per_text for p in found))
    if not flat or classifier is None:
        return [{} for _ in texts]
    verdict = dict(zip(flat, classifier.scores(flat), strict=True))
    return [
        {p: classifier_reason(p, verdict[p]) for p in found if verdict[p] >= classifier.threshold}
        for found in per_text
    ]


def instruction_reasons(texts: Sequence[str]) -> list[str]:
    """For each text, the reason of the first piece ``instructions_find`` judges an
    instruction, or "": what flags a whole chunk or claim."""
    return [next(iter(found.values()), "") for found in instructions_find(texts)]
