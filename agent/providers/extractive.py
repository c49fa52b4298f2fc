"""The embedded default: answers only with sentences copied from the retrieved passages."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from agent.pipeline.schema import AnswerOut, ClaimOut
from agent.providers.protocols import (
    Attempt,
    ChatRequest,
    ChatResult,
    StreamEvent,
    StreamHead,
    Usage,
)
from retrieval.pipeline.text import is_statement, split_sentences, tokenize
from retrieval.providers.registry import embedder


class ExtractiveChatModel:
    """No LLM: picks the passage sentences closest to the question, each citing its passage.

    A sentence's score is its embedding similarity to the question plus a small bonus for the
    question's content words it contains. It can never state anything the passages don't say.
    Confidence is the best sentence's score, so weak matches fall to the gate's escalate/refuse.
    """

    provider = "extractive"
    model = "extractive"
    local = True  # no network, no cost: exempt from the turn's attempt cap and circuit breakers

    def __init__(
        self,
        max_sentences: int = 3,
        min_score: float = 0.35,
        relative: float = 0.85,
        overlap_weight: float = 0.15,
    ):
        self.max_sentences = max_sentences
        self.min_score = min_score
        self.relative = relative
        self.overlap_weight = overlap_weight

    def generate(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        rows = [
            (p.number, s)
            for p in request.passages
            for s in split_sentences(p.text)
            if is_statement(s) and not _is_heading(s, p.heading)
        ]
        claims: list[ClaimOut] = []
        best = 0.0
        if rows:
            emb = embedder()
            sims = emb.embed_sentences([s for _, s in rows]) @ emb.embed_query(request.question)  # type: ignore[attr-defined]
            q_terms = set(tokenize(request.question))
            overlap = np.array(
                [len(q_terms & set(tokenize(s))) / max(len(q_terms), 1) for _, s in rows]
            )
            scores = sims + self.overlap_weight * overlap
            order = np.argsort(-scores, kind="stable")
            best = float(scores[order[0]])
            seen: set[str] = set()
            for i in order:
                number, sentence = rows[i]
                if scores[i] < max(self.min_score, self.relative * best):
                    break
                if sentence in seen:
                    continue
                seen.add(sentence)
                claims.append(ClaimOut(text=sentence, passages=[number]))
                if len(claims) == self.max_sentences:
                    break
        answer = AnswerOut(
            decision="answer" if claims else "refuse",
            confidence=float(min(max(best, 0.0), 1.0)),
            claims=claims,
        )
        latency = int((time.perf_counter() - started) * 1000)
        attempt = Attempt(
            provider=self.provider, model=self.model, latency_ms=latency, usage=Usage()
        )
        return ChatResult(
            answer=answer, provider=self.provider, model=self.model, attempts=[attempt]
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Fast enough not to need real streaming: the whole result, as events."""
        result = self.generate(request)
        yield StreamHead(decision=result.answer.decision, confidence=result.answer.confidence)
        yield from result.answer.claims
        yield result


def _is_heading(sentence: str, heading: str) -> bool:
    """The passage's own section heading, repeated as a line of its text: not an answer."""
    return sentence.strip("#*- ").casefold() == heading.strip().casefold() != ""
