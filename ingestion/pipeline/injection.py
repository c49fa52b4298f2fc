"""Flag chunk text that carries instructions aimed at the model (indirect prompt injection).

Pure step. A flag is a signal for people (the admin lists flagged chunks) and for the answer
prompt; it does not drop the chunk. Rules, each with a reason:
- invisible carriers: zero-width or bidi control characters, text hidden in the source (hidden
  HTML, white or zero-size text: the parser marks those blocks);
- classic override phrases ("ignore previous instructions", "you are now", "system prompt");
- text that addresses the assistant or its reply ("in your answer", "when you respond",
  "encode your reply in base64") or that tells the reader to act on the user ("ask the user to",
  "tell the user to visit").
Tuned on the "train" rows of the BIPIA-style set only (see bench/injection_detector.py).

Rules only know the phrasings they name. Beside them, a trained classifier
(``ingestion.providers``) judges each sentence that is phrased to somebody (`addressed`): a
question, a sentence in the second person or the first person singular, or one shaped like an
imperative. This module holds the pure half: how text is cut into those pieces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_INVISIBLE = re.compile(
    "[\u200b\u200c\u200d\u2060\u2062\u2063\u2064\ufeff\u202a-\u202e\u2066-\u2069]"
)
_OVERRIDE = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(previous|prior|above|earlier|"
    r"all|any|your|the)\b[^.\n]{0,30}\b(instructions?|prompts?|rules|directions|guidelines|"
    r"context)\b|\byou are now\b|\bsystem prompt\b|\bnew instructions?\b|\bdeveloper mode\b|"
    r"\bjailbreak\b|\bact as (an?|the) \w+|\bpretend (to be|you are)\b",
    re.IGNORECASE,
)
_ADDRESSES_MODEL = re.compile(
    r"\b(in|at the (end|start|beginning) of|to) your (reply|replies|response|responses|answer|"
    r"answers|output)\b|\byour (reply|response|answer|output) (should|must|in)\b|"
    r"\bwhen (you )?(respond|replying|answering|you answer|you reply)\b|"
    r"\b(reply|respond|answer|write|encode|translate|rewrite) (only |everything |all )?"
    r"(in|with|using) (base64|base 64|rot13|hex|binary|morse|emojis?|caesar|reverse|french|"
    r"spanish|german|chinese|pig latin|leetspeak|uppercase|all caps)\b|"
    r"\b(as an|as a) (ai|language model|assistant)\b|\b(the|an?) (ai|assistant|chatbot|llm)\b"
    r"[^.\n]{0,30}\b(must|should|will)\b|\b(tell|ask|urge|instruct|convince|remind) the user\b|"
    r"\bthe user (must|should)\b|\b(dear|attention) (ai|assistant|model)\b|"
    r"\byour (reply|replies|response|responses|answer|answers|output)\b",
    re.IGNORECASE,
)
# A task for a chatbot dropped into a document: a sentence that opens with a writing or tutoring
# verb in the imperative, or a general-knowledge question ("How do I ...?", "Who wrote ...?").
# A table cell opens a piece of its own: parsers render table rows as "| a | b |" lines, and a
# plain-text table folded into one paragraph puts a line pasted between two rows after a "|".
_QUESTION = (
    r"(how do (i|you)|how can i|what (is|are) the|who (wrote|invented|painted|discovered)|"
    r"what's|why (is|does|do))\b[^?\n]{3,120}\?"
)
_OFF_TASK = re.compile(
    r"(^|[.!?]\s+|\n|\|)\s*(please\s+)?((compose|write|draft|explain|translate|recommend|"
    r"suggest|describe|summari[sz]e|generate|create|tell me|teach me|give me|show me|list)\s+(a|"
    r"an|the|me|how|what|why|some|three|five|ten|\d+)\b|provide an? (example|explanation|list|"
    rf"tutorial)\b|{_QUESTION})",
    re.IGNORECASE,
)
# A question pasted into the middle of a word, with no space or punctuation before it
# ("...will be withdrawn fromWho wrote ...?", "charged $3,6How do I ...?"): a capital straight
# after a small letter or a digit. Questions only, so a camelCase name ("getList the") is no task.
_GLUED_QUESTION = re.compile(rf"(?<=[a-z\d])(?=[A-Z])(?i:{_QUESTION})")

# Parsers fold single line breaks into spaces, so an instruction pasted on a line of its own
# arrives mid-sentence ("...The Mercury Team Compose a letter to ..."): the same openers,
# capitalised, straight after a capitalised word or a number (the end of a signature or a footer
# line) with no sentence punctuation between. Case-sensitive, so a button named mid-sentence
# ("choose Create a notebook") does not count.
_FOLDED_TASK = re.compile(
    r"(\b[A-Z]\w*|[\d)])\s+((Please\s+)?(Compose|Write|Draft|Explain|Translate|Recommend|Suggest|Describe|"
    r"Summari[sz]e|Generate|Create|Tell me|Teach me|Give me|Show me|List)\s+(a|an|the|me|how|"
    r"what|why|some|three|five|ten|\d+)\b|Provide an? (example|explanation|list|tutorial)\b|"
    r"(How do (I|you)|How can I|What (is|are) the|Who (wrote|invented|painted|discovered)|"
    r"What's|Why (is|does|do))\b[^?\n]{3,120}\?)"
)

# For model output (agent.pipeline.guards.claim_task): a claim of a support answer states
# something; one that is itself a question ("Can you ...?", "What is ...?": opens with a question
# word or an auxiliary and ends in "?") or a task for a chatbot is what an injected instruction
# looks like when a model restates it. "Choose Forgot password?" names a button: no question.
# The task verbs are the detector's, less those a support answer uses for a product step
# ("Create a workspace", "List the members", "Write a description", "Generate a token").
_QUESTION_SENTENCE = re.compile(
    r"^\W*(how|what|what's|who|whom|whose|why|when|where|which|can|could|would|will|should|"
    r"shall|is|are|was|were|do|does|did|have|has)\b[^?]*\?\W*$",
    re.IGNORECASE,
)
_CLAIM_TASK = re.compile(
    r"^\W*(please\s+)?((compose|draft|explain|translate|recommend|suggest|summari[sz]e|tell me|"
    r"teach me|give me|show me)\s+(a|an|the|me|how|what|why|some|three|five|ten|\d+)\b|"
    r"provide an? (example|explanation|list|tutorial)\b)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def task_reason(text: str) -> str:
    """A short reason when a sentence of `text` (a claim of an answer) is a question or a task
    for a chatbot rather than a statement, else ""."""
    for sentence in _SENTENCE_END.split(text.strip()):
        if _QUESTION_SENTENCE.match(sentence):
            return f"a question, not a statement: {_quote(sentence)}"
        match = _CLAIM_TASK.match(sentence)
        if match:
            return f"a task, not a statement: {_quote(match.group(0))}"
    return ""


def injection_reason(text: str, *, hidden: bool = False) -> str:
    """A short reason when `text` looks like instructions aimed at the model, else ""."""
    if hidden:
        return "hidden text in the source document"
    if _INVISIBLE.search(text):
        return "invisible (zero-width or bidi) characters"
    match = _OVERRIDE.search(text)
    if match:
        return f"instruction override: {_quote(match.group(0))}"
    match = _ADDRESSES_MODEL.search(text)
    if match:
        return f"addresses the assistant: {_quote(match.group(0))}"
    match = _OFF_TASK.search(text) or _FOLDED_TASK.search(text) or _GLUED_QUESTION.search(text)
    if match:
        return f"task for a chatbot: {_quote(match.group(0))}"
    return ""


# --- Pieces: the sentences and table cells the detectors judge one at a time -------------------

# Sentence ends inside a line, and separators that documents use between fields ("SUBJECT: ..|
# CONTENT: ..", table cells): an instruction pasted between two fields starts a piece of its own.
_PIECE_END = re.compile(r"(?<=[.!?])\s+|\s*\|\s*")
_TABLE_ROW = re.compile(r"^\s*\|(?:[^|\n]*\|){2,}")


def pieces(line: str) -> tuple[list[str], list[str]]:
    """``line`` cut at sentence ends and field separators: the pieces and the separators
    between them, so that ``"".join`` of them interleaved gives ``line`` back."""
    found, separators, start = [], [], 0
    for match in _PIECE_END.finditer(line):
        found.append(line[start : match.start()])
        separators.append(match.group(0))
        start = match.end()
    found.append(line[start:])
    return found, separators


# Closed-class words (articles, pronouns, prepositions, conjunctions, a few adverbs): a sentence
# that opens with one of these is not an imperative. An imperative opens with a verb followed by
# its object or complement, which usually starts with one of `_OBJECT_STARTS`.
_NOT_VERBS = frozenset(
    """a an the this that these those it its we our they their he his she her i my you your
    there here in on at for of to with by from as if when while after before since because
    although though and or but so yet not no all each every some any many most more few both
    either neither one two three first second next then also however therefore thus""".split()
)
_OBJECT_STARTS = frozenset(
    """the a an this that these those your my me us them it its his her their our all any some
    each every how what why whether which who where when in into to with about out up down on
    off over through""".split()
)
_PERSONAL = re.compile(r"\b(you|your|yours|yourself|me|my)\b", re.IGNORECASE)
_WORDS = re.compile(r"[A-Za-z][A-Za-z'’-]*")


def addressed(piece: str) -> bool:
    """Whether ``piece`` is phrased to somebody: a question, a sentence in the second person or
    the first person singular, or one shaped like an imperative ("Analyze the ...", "Help me").
    Most document text (third-person statements, names, numbers) is not, and is never sent to
    the classifier; a product step ("Open the sign-in page") is, and the classifier judges it."""
    if piece.rstrip().endswith("?") or _PERSONAL.search(piece):
        return True
    words = _WORDS.findall(piece[:80])
    if len(words) < 3:
        return False
    first, second = words[0].lower(), words[1].lower()
    return first not in _NOT_VERBS and second in _OBJECT_STARTS and not first.endswith(("ed", "s"))


def sentences(text: str) -> list[str]:
    """The distinct pieces of ``text`` outside table rows (cells are names and numbers; a line
    pasted between two rows is no row), whitespace folded, of two words or more with a letter."""
    return list(dict.fromkeys(piece for piece, _ in _sentences_quoted(text)))


def classifier_pieces(text: str) -> list[str]:
    """The pieces of ``text`` the classifier judges: its addressed sentences in English (its
    references are English: text in another language would be judged by its language alone),
    outside quotation marks (reported speech, such as a novel's dialogue, speaks to somebody in
    the text, not to the reader: judging it made the classifier a quarter of the embedding work
    of *War and Peace*; the rules still read it)."""
    from ingestion.pipeline.language import english

    found = (p for p, quoted in _sentences_quoted(text) if not quoted and addressed(p))
    return [piece for piece in dict.fromkeys(found) if english(piece)]


_QUOTE_MARK = re.compile(r"[\"“”«»]")
_OPENS_QUOTE = re.compile(r"^\W*[\"“«]")


def _sentences_quoted(text: str) -> Iterator[tuple[str, bool]]:
    """Each piece of ``sentences`` with whether it stands inside double quotation marks (an odd
    number of them before it on its line, or it opens with one)."""
    for line in text.split("\n"):
        if _TABLE_ROW.match(line):
            continue
        found, separators = pieces(line)
        marks = 0
        for piece, separator in zip(found, [*separators, ""], strict=True):
            folded = " ".join(piece.split())
            if len(folded.split()) >= 2 and any(c.isalpha() for c in folded):
                yield folded, marks % 2 == 1 or bool(_OPENS_QUOTE.match(folded))
            marks += len(_QUOTE_MARK.findall(piece)) + len(_QUOTE_MARK.findall(separator))


def classifier_reason(piece: str, score: float) -> str:
    return f"reads as a prompt for a chatbot ({score:.2f}): {_quote(piece)}"


def _quote(fragment: str) -> str:
    fragment = " ".join(fragment.split())
    return f"“{fragment[:60]}”"
