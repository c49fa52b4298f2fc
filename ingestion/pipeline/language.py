"""Which language a text is written in: the drift dashboard's language mix of questions, and
the sentences the instruction classifier (English references) can judge.

py3langid (a maintained fork of langid.py: a naive Bayes model over byte n-grams, 97 languages,
shipped inside its 4.6 MB wheel, numpy only) rather than langdetect (randomised unless seeded,
and it called "How long is a password reset link valid?" Afrikaans) or lingua (a 96 MB wheel).
Measured here: 1.4 s and ~120 MB to load the model once per process, then ~0.04 ms a question.
"""

from __future__ import annotations

from functools import cache
from typing import Any

UNDETERMINED = "und"  # ISO 639-2 for "undetermined"
# Two words ("export pdf") carry too few n-grams to tell a language: langid called that Danish.
MIN_WORDS = 3


@cache
def _identifier() -> Any:
    from py3langid import langid

    return langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE)


def language_detect(text: str) -> str:
    """ISO 639-1 code of ``text``'s language, or ``und`` when it is too short to tell."""
    if len(text.split()) < MIN_WORDS:
        return UNDETERMINED
    return str(_identifier().classify(text)[0])


# How far (log-probability per character) another language must score above English before a
# sentence counts as not English. langid calls short English sentences Spanish or Pidgin by a
# hair ("Help me plan a party.": 0.03, "Say hello to my friend Anna from me.": 0.11); German,
# French, Spanish, Dutch, Swedish or Portuguese sentences win by 0.8 to 3.5.
_NOT_ENGLISH_MARGIN = 0.5


def english(text: str) -> bool:
    """Whether ``text`` reads as English (or is too short to tell): no other language scores
    clearly above English."""
    if len(text.split()) < MIN_WORDS:
        return True
    scores = dict(_identifier().rank(text))
    return max(scores.values()) - scores["en"] <= _NOT_ENGLISH_MARGIN * len(text)
