"""What a chat model must return: claims, each citing the passages that support it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClaimOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="One sentence of the answer.")
    passages: list[int] = Field(
        description="Numbers of the passages ([1], [2], ...) that support this sentence."
    )


class AnswerOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["answer", "escalate", "refuse"]
    confidence: float = Field(ge=0.0, le=1.0)
    claims: list[ClaimOut]


ANSWER_JSON_SCHEMA = AnswerOut.model_json_schema()
