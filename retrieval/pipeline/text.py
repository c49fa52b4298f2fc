"""Pure text helpers shared by lexical search, reranking and extraction."""

from __future__ import annotations

import re
from functools import cache

# Common English function words: they match everywhere and only add noise to BM25.
STOP_WORDS = frozenset(
    """a an and are as at be but by can do does for from has have how i if in into is it its me
    my no not of on or our so than that the their them then there these they this to was we
    were what when where which who why will with you your""".split()
)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\s*\n\s*")
_TERMINAL = ".!?。！？:;)\"'”"


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stop words (any script)."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOP_WORDS]


@cache
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer  # PyStemmer: the Snowball stemmers in C

    return Stemmer.Stemmer("english")


def lexical_terms(text: str, *, stem: bool = True) -> list[str]:
    """BM25 terms: ``tokenize`` then, when ``stem``, the English Snowball stem of each token.

    Stemming lets "inhibits" match "inhibition"; non-Latin tokens pass through unchanged.
    """
    tokens = tokenize(text)
    return _stemmer().stemWords(tokens) if stem else tokens


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentences and lines (headings, list items), whitespace folded."""
    return [" ".join(p.split()) for p in _SENTENCE_END.split(text) if p and p.strip()]


def is_statement(sentence: str, *, min_words: int = 4) -> bool:
    """True for a sentence that says something; False for headings and labels ("Refunds")."""
    stripped = sentence.strip().lstrip("-*•# ").strip()
    return len(stripped.split()) >= min_words or stripped.endswith(tuple(_TERMINAL))
