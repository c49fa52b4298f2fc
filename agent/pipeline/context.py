"""The context budget: passages and history fit the model's window with room for the answer;
older turns are summarised; a follow-up is rewritten into a standalone retrieval query."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from agent.providers.protocols import Passage, Turn
from retrieval.pipeline.text import split_sentences, tokenize

Count = Callable[[str], int]

# A question built on the previous one: "what about ...", "and for X?", "does it ...".
FOLLOW_UP_STARTS = ("what about", "how about", "and ", "also ", "what if", "same for")
FOLLOW_UP_WORDS = frozenset("it its that this those these they them there one".split())
SUMMARY_CHARS = 120


def chars_count(text: str) -> int:
    """The tokenizer-free estimate: about four characters a token."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Fitted:
    passages: list[Passage]
    history: list[Turn]
    tokens: int  # of the prompt as it will be sent
    dropped_passages: int
    summarised_turns: int


def history_compact(history: list[Turn], *, verbatim: int) -> tuple[list[Turn], int]:
    """The last ``verbatim`` turns as they are, older ones folded into one summary turn."""
    if len(history) <= verbatim:
        return history, 0
    older, recent = history[: len(history) - verbatim], history[len(history) - verbatim :]
    asked = [
        (split_sentences(t.text) or [t.text])[0][:SUMMARY_CHARS] for t in older if t.role == "user"
    ]
    summary = Turn(role="summary", text="Earlier the user asked: " + " | ".join(asked))
    return ([summary] if asked else []) + recent, len(older)


def context_fit(
    *,
    fixed: str,
    passages: list[Passage],
    history: list[Turn],
    window: int,
    reserve: int,
    count: Count,
    verbatim_turns: int,
) -> Fitted:
    """Keep passages in rank order and the most recent history while the prompt (``fixed``: the
    system and question text) leaves ``reserve`` tokens of ``window`` for the answer. At least the
    best passage is always kept, so the answer has evidence."""
    budget = window - reserve - count(fixed)
    history, summarised = history_compact(history, verbatim=verbatim_turns)
    kept_history: list[Turn] = []
    for turn in reversed(history):  # newest first: they matter most to a follow-up
        cost = count(turn.text) + 2
        if cost > budget // 4:  # history never takes more than a quarter of what is left
            break
        kept_history.insert(0, turn)
        budget -= cost
    kept: list[Passage] = []
    for p in passages:
        cost = count(p.text) + count(p.title) + 8  # markers, number, location
        if kept and cost > budget:
            break
        kept.append(p)
        budget -= cost
    used = window - reserve - budget
    return Fitted(
        passages=kept,
        history=kept_history,
        tokens=used,
        dropped_passages=len(passages) - len(kept),
        summarised_turns=summarised + len(history) - len(kept_history),
    )


def is_follow_up(question: str) -> bool:
    lowered = question.lower().strip()
    words = {w.strip("?,.!;:'\"") for w in lowered.split()}
    return lowered.startswith(FOLLOW_UP_STARTS) or bool(words & FOLLOW_UP_WORDS) or len(words) <= 3


def query_rewrite(question: str, history: list[Turn]) -> str:
    """A standalone retrieval query for a follow-up: the question plus the content words of the
    previous user question it depends on. Deterministic (no model call); an unrelated question
    is returned unchanged."""
    previous = next((t.text for t in reversed(history) if t.role == "user"), "")
    if not previous or not is_follow_up(question):
        return question
    own = set(tokenize(question))
    carried = [w for w in dict.fromkeys(tokenize(previous)) if w not in own]
    return f"{question} ({' '.join(carried)})" if carried else question
