"""The interface every chat model implements, with typed requests and results."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from agent.pipeline.schema import AnswerOut, ClaimOut


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
    # Flagged at ingestion as carrying instructions aimed at the model: the passage reaches the
    # model fenced (a warning, the offending sentences removed) or not at all (a setting).
    flagged: bool = False


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
    output_schema: str = "answer"  # the reply schema (``AnswerOut``)
    temperature: float = 0.0


@dataclass(frozen=True)
class ChatRequest:
    question: str
    passages: list[Passage]
    prompt: Prompt
    history: list[Turn] = field(default_factory=list)
    idempotency_key: str = ""
    # The turn's limits across the whole fallback chain: a ``time.monotonic()`` deadline and the
    # provider calls still allowed (0: no limit beyond the model's own).
    deadline: float = 0.0
    max_attempts: int = 0
    # Streamed turns: a ``time.monotonic()`` time the first token should arrive by (0: none). A
    # model does not wait out a retry past it; the chain moves on to its next model instead.
    first_token_by: float = 0.0
    # A random marker put in the system prompt; an answer that contains it leaked the prompt.
    canary: str = ""


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
    # Providers create an Attempt as the call ends, so this is when it ended (for its span).
    ended_ns: int = field(default_factory=time.time_ns, compare=False, repr=False)


@dataclass(frozen=True)
class ChatResult:
    answer: AnswerOut
    provider: str
    model: str
    attempts: list[Attempt]


@dataclass(frozen=True)
class StreamHead:
    """Streamed before the claims: the model's decision and confidence."""

    decision: str
    confidence: float


# What ``ChatModel.stream`` yields: the head, each claim once complete, then the final result.
StreamEvent = StreamHead | ClaimOut | ChatResult


class ChatModel(Protocol):
    """Turns a question plus numbered passages into a structured, cited answer.

    Raises ``ragapp.errors.ProviderError`` when it cannot; ``error.extra["attempts"]`` then holds
    the ``Attempt`` list so failed calls are still recorded.
    """

    provider: str
    model: str

    def generate(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Like ``generate``, yielding as the reply arrives; the last event is the ``ChatResult``.

        A failure after the first claim raises ``ProviderError(code="stream_cut")``."""
        ...
