"""Prompt-injection heuristics for questions: deterministic, explainable, multilingual.

A detector is an oracle, not a gate: the guarantees come from fencing retrieved text and from the
output guards. A flagged question is logged; only strong signals refuse it. Measured on the
deepset prompt-injection set (``bench/safety``); see README "Security".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each rule: (name, weight, pattern). Weights add up; the strongest rule names the verdict.
_FORGET = (
    r"(forget|ignore|disregard|overlook|skip|drop|vergiss|vergessen|ignorier\w*|oubliez|oublie|"
    r"olvida\w*|ignora\w*)"
)
_PRIOR = (
    r"(all|any|every|the|your|my|previous|prior|above|earlier|before|preceding|former|bisherig\w*|"
    r"vorherig\w*|alle[ns]?|précédentes|toutes|anteriores|todo)"
)
_RULES: list[tuple[str, float, re.Pattern[str]]] = [
    (
        "override_instructions",
        1.0,
        re.compile(
            rf"\b{_FORGET}\b[^.!?\n]{{0,40}}\b({_PRIOR}\b[^.!?\n]{{0,30}})?"
            r"(instruction\w*|prompt\w*|task\w*|rule\w*|everything|all|above|before|davor|"
            r"anweisung\w*|aufgabe\w*|alles|vorher|instructions|tout|todo|informationen|gesagt|"
            r"besprochen)",
            re.I,
        ),
    ),
    (
        "reveal_prompt",
        1.0,
        re.compile(
            r"\b(show|print|reveal|display|tell|repeat|output|give|zeig\w*|gib|nenn\w*)\b[^.!?\n]{0,40}"
            r"\b(system\s*prompt|your\s+(prompt|instructions|rules)|prompt\s*text\w*|initial\s+prompt|"
            r"deine[nm]?\s+(prompt|anweisung\w*))",
            re.I,
        ),
    ),
    (
        "new_role",
        0.8,
        re.compile(
            r"\b(you\s+are\s+now|now\s+you\s+are|from\s+now\s+on\s+you|pretend\s+(to\s+be|you)|"
            r"act\s+as|role-?play|du\s+bist\s+(jetzt|nun|ab\s+jetzt)|ab\s+jetzt\s+bist\s+du|"
            r"tu\s+es\s+maintenant|stell\s+dir\s+vor,?\s+du\s+bist|fungieren|agiere\s+als|"
            r"i\s+want\s+you\s+to\s+act|ich\s+möchte,?\s+dass\s+sie\s+als)\b",
            re.I,
        ),
    ),
    (
        "new_task",
        0.7,
        re.compile(
            r"\b(new\s+task|neue\s+aufgabe|nouvelle\s+tâche|now\s+focus\s+on|jetzt\s+kommen|"
            r"your\s+(next|new)\s+(task|job))\b",
            re.I,
        ),
    ),
    (
        "command_write",
        0.7,
        re.compile(
            r"(^|\b)(stop|halt|stopp)\s*[-:!]+\s*(write|say|schreib\w*|sag\w*)\b|"
            r"\b(say|write|schreib\w*|sag\w*|dites|di)\b[^.!?\n]{0,20}\b(that\s+)?(you\s+hate|ich\s+hasse|"
            r"je\s+déteste)|\brepeat\s+after\s+me\b",
            re.I,
        ),
    ),
    (
        "jailbreak",
        1.0,
        re.compile(
            r"\b(jailbreak|DAN\b|do\s+anything\s+now|developer\s+mode|no\s+restrictions|without\s+"
            r"(any\s+)?(filter|restriction)s?|ohne\s+(filter|einschränkung\w*))",
            re.I,
        ),
    ),
    (
        "new_instructions",
        0.8,
        re.compile(
            r"\b(new|further|additional|weitere|neue)\s+(instruction\w*|anweisung\w*|aufgaben?|tasks?)\b|"
            r"\byour\s+instructions\s+are\s+now\b|\bdespite\s+what\s+you.ve\s+been\s+told\b|"
            r"\bdo\s+not\s+answer\s+this\b|\blassen\s+sie\s+alle\s+vorherigen\b|"
            r"\b(that\s+is|that.s)\s+(enough|done)\b|\bdas\s+(genügt|ist\s+erledigt)\b",
            re.I,
        ),
    ),
    (
        "ignore_sources",
        0.8,
        re.compile(
            r"\b(not\s+by|nicht\s+(nach|mit))\s+(the\s+|den\s+)?(articles|artikeln?|documents?)\b|"
            r"\bdisregarding\s+the\s+(articles|documents?)\b|\byour\s+own\s+knowledge\b|"
            r"\bif\s+you\s+don.t\s+know,?\s+make\s+something\s+up\b",
            re.I,
        ),
    ),
    (
        "you_are",
        0.8,
        re.compile(
            r"(^|[.!?:]\s*)(ok\.?\s*|okay\.?\s*)?(now\s+|nun\s+|jetzt\s+)?"
            r"(you\s+are|du\s+bist|sie\s+sind)\s+(?!able\b|allowed\b|logged\b|signed\b)\w",
            re.I,
        ),
    ),
    (
        "style_hijack",
        0.7,
        re.compile(
            r"\b(in\s+the\s+style\s+of|im\s+stil(e)?\s+(eines|einer|von)|role-?playing|"
            r"in\s+deiner\s+rolle)\b",
            re.I,
        ),
    ),
    (
        "assert_claim",
        0.8,
        re.compile(
            r"\b(state|say|sag\w*|behaupte\w*)\s+that\b|\binclude\s+that\s+you\b|\bjust\s+output\b|"
            r"\b(write|verfasse|schreib\w*|formulier\w*|formulate)\s+(me\s+|mir\s+)?(a|an|ein|eine)?\s*"
            r"(manifesto|manifest|reason|begründung|poem|gedicht|rhyme|headline|überschrift|"
            r"untrue|unwahre)\b",
            re.I,
        ),
    ),
    (
        "injected_context",
        0.7,
        re.compile(
            r"^\s*(document\s+)?(context|kontext|artikel)\s*[:{\"]?.{0,200}\b(question|frage)\b",
            re.I | re.S,
        ),
    ),
    (
        "markup_escape",
        0.5,
        re.compile(r"(\\\s*n\s*){4,}|(<\|?(im_start|system|endoftext)\|?>)", re.I),
    ),
]


@dataclass(frozen=True)
class InjectionVerdict:
    score: float  # 0 (nothing) .. capped at 1
    rule: str  # the strongest rule that matched, "" when none
    excerpt: str


def injection_check(text: str) -> InjectionVerdict:
    """Score a question for instructions aimed at the model rather than at the documentation."""
    hits = [(w, name, m.group(0)) for name, w, pattern in _RULES if (m := pattern.search(text))]
    if not hits:
        return InjectionVerdict(0.0, "", "")
    weight, name, excerpt = max(hits, key=lambda hit: hit[0])  # ties: the rule listed first
    return InjectionVerdict(min(1.0, sum(w for w, _, _ in hits)), name, excerpt[:120])
