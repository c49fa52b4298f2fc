"""The interface every chat model implements, with typed requests and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agent.pipeline.schema import AnswerOut


@dataclass(frozen=True)
class Passage:
    """A retrieved passage as the model sees it: ``number`` is what claims cite."""

    number: int
    chunk_id: int
    text: str
    title: str
    page: int | None
    heading: str
    score: float


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    text: str


@dataclass(frozen=True)
class Prompt:
    id: str
    version: str
    hash: str
    system: str  # the system message template
    user: str  # the user message template: {question} {passages} {history}


@dataclass(frozen=True)
class ChatRequest:
    question: str
    passages: list[Passage]
    prompt: Prompt
    history: list[Turn] = field(default_factory=list)
    idempotency_key: str = ""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True)
class Attempt:
    """One call to a provider, successful or not: what the usage log records."""

    provider: str
    model: str
    latency_ms: int
    usage: Usage
    error_code: str = ""


@dataclass(frozen=True)
class ChatResult:
    answer: AnswerOut
    provider: str
    model: str
    attempts: list[Attempt]


class ChatModel(Protocol):
    """Turns a question plus numbered passages into a structured, cited answer.

    Raises ``ragapp.errors.ProviderError`` when it cannot; ``error.extra["attempts"]`` then holds
    the ``Attempt`` list so failed calls are still recorded.
    """

    provider: str
    model: str

    def generate(self, request: ChatRequest) -> ChatResult: ...
