"""Pure text helpers shared by lexical search, reranking and extraction."""

from __future__ import annotations

import re

# Common English function words: they match everywhere and only add noise to BM25.
STOP_WORDS = frozenset(
    """a an and are as at be but by can do does for from has have how i if in into is it its me
    my no not of on or our so than that the their them then there these they this to was we
    were what when where which who why will with you your""".split()
)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}|\n(?=[-*•]\s)")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stop words (any script)."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS]


def split_sentences(text: str, *, min_chars: int = 12) -> list[str]:
    """Split a passage into sentences; fragments shorter than ``min_chars`` join the next one."""
    pieces = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
    sentences: list[str] = []
    carry = ""
    for piece in pieces:
        piece = f"{carry} {piece}".strip() if carry else piece
        if len(piece) < min_chars:
            carry = piece
            continue
        sentences.append(" ".join(piece.split()))
        carry = ""
    if carry:
        if sentences:
            sentences[-1] = f"{sentences[-1]} {carry}"
        else:
            sentences.append(carry)
    return sentences
