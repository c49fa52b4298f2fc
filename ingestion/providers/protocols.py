"""The interface of the instruction classifier: the detector beside the rules of
``ingestion.pipeline.injection`` that judges text it was not written for."""

from __future__ import annotations

from typing import Protocol


class InstructionClassifier(Protocol):
    """Scores pieces of text (sentences) for reading as a prompt to a chatbot rather than as
    document content: 1.0 is certainly an instruction or a request for the model."""

    name: str
    threshold: float  # a score at or above it counts as an instruction

    def scores(self, pieces: list[str]) -> list[float]: ...
