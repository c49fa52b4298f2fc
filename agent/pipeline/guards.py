"""Deterministic guardrails on text going to and coming from a model. Pure functions.

These are the hard guarantees: the model is never trusted to keep a secret, to avoid a link or
to leave personal data alone. Each function returns the cleaned text and what it found, so the
caller can log a GuardrailEvent per finding.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Finding:
    rule: str  # e.g. "pii_email", "external_link", "canary", "prompt_leak", "task_claim"
    excerpt: str


# --- Personal data -------------------------------------------------------------------------------

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"\b(?:\d[ \-]?){12,18}\d\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?"  # country code
    r"(?:\(\d{2,4}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?![ .\-]?\d)"  # (area) or 3 + 3 + 4
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact_pii(text: str) -> tuple[str, list[Finding]]:
    """Replace e-mail addresses, card numbers (Luhn-valid), IBANs and phone numbers."""
    findings: list[Finding] = []

    def sub(rule: str, label: str, pattern: re.Pattern[str], check=None):  # type: ignore[no-untyped-def]
        def replace(match: re.Match[str]) -> str:
            if check and not check(match.group(0)):
                return match.group(0)
            findings.append(Finding(rule, match.group(0)[:4] + "…"))
            return f"[{label}]"

        return replace

    text = _EMAIL.sub(sub("pii_email", "EMAIL", _EMAIL), text)
    text = _IBAN.sub(sub("pii_account", "ACCOUNT", _IBAN), text)
    text = _CARD.sub(sub("pii_card", "CARD", _CARD, lambda s: _luhn_ok(re.sub(r"\D", "", s))), text)
    text = _PHONE.sub(sub("pii_phone", "PHONE", _PHONE), text)
    return text, findings


# --- Links and images in model output ------------------------------------------------------------

_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MD_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HTML_TAG = re.compile(r"<\s*(img|a|iframe|script|object|embed|link|meta)\b[^>]*>", re.I)
_BARE_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\"']+|\bwww\.[^\s<>()\"']+", re.I)


def _allowed(url: str, allowed_hosts: frozenset[str]) -> bool:
    if url.startswith("/") and not url.startswith("//"):
        return True  # same-site path
    host = (urlsplit(url if "://" in url else f"https://{url}").hostname or "").lower()
    return any(host == h or host.endswith(f".{h}") for h in allowed_hosts)


def neutralize_links(text: str, *, allowed_hosts: frozenset[str]) -> tuple[str, list[Finding]]:
    """Drop images and HTML tags; keep the text of links that point outside the allow-list.

    Markdown images are how a poisoned passage exfiltrates data (the browser fetches the URL with
    the secret in it), so every image goes, allowed host or not.
    """
    findings: list[Finding] = []

    def image(match: re.Match[str]) -> str:
        findings.append(Finding("external_image", match.group(2)[:80]))
        return match.group(1)

    def link(match: re.Match[str]) -> str:
        if _allowed(match.group(2), allowed_hosts):
            return match.group(0)
        findings.append(Finding("external_link", match.group(2)[:80]))
        return match.group(1)

    def tag(match: re.Match[str]) -> str:
        findings.append(Finding("html_tag", match.group(0)[:80]))
        return ""

    def bare(match: re.Match[str]) -> str:
        if _allowed(match.group(0), allowed_hosts):
            return match.group(0)
        findings.append(Finding("external_link", match.group(0)[:80]))
        return "[link removed]"

    text = _MD_IMAGE.sub(image, text)
    text = _MD_LINK.sub(link, text)
    text = _HTML_TAG.sub(tag, text)
    text = _BARE_URL.sub(bare, text)
    return text, findings


# --- Secrets of the prompt -----------------------------------------------------------------------


def new_canary() -> str:
    """A random marker for one request's system prompt; it must never appear in an answer."""
    return f"CANARY-{secrets.token_hex(8)}"


def leaks_prompt(
    output: str, *, system_prompt: str, canary: str, min_words: int = 8
) -> Finding | None:
    """The canary, or ``min_words`` consecutive words of the system prompt, found in ``output``."""
    if canary and canary in output:
        return Finding("canary", canary)
    words = re.findall(r"\w+", system_prompt.lower())
    haystack = " ".join(re.findall(r"\w+", output.lower()))
    for i in range(len(words) - min_words + 1):
        run = " ".join(words[i : i + min_words])
        if run in haystack:
            return Finding("prompt_leak", run[:80])
    return None


def claim_task(
    text: str,
    *,
    classified: str = "",
    relevance: float | None = None,
    min_relevance: float = 0.0,
) -> Finding | None:
    """A claim that is itself a question or a task for a chatbot, not a statement of a support
    answer: how an obedient model restates an instruction it found in a passage. The citation
    check cannot catch it (the words are in the passage it cites), so it is dropped here.
    ``classified``: the instruction classifier's reason when it judged a sentence of the claim
    an instruction. ``relevance``: the claim's cosine similarity to the question; a claim
    phrased to somebody (``addressed``: a request, a question, "you ...") below
    ``min_relevance`` answers nothing that was asked."""
    from ingestion.pipeline.injection import addressed, task_reason

    reason = task_reason(text) or classified
    if not reason and relevance is not None and relevance < min_relevance and addressed(text):
        reason = f"phrased to somebody and unrelated to the question ({relevance:.2f})"
    return Finding("task_claim", f"{reason}: {text[:120]}") if reason else None


# --- Retrieved passages --------------------------------------------------------------------------

REMOVED_INSTRUCTION = "[removed: text addressed to the assistant]"


def passage_screen(
    text: str, *, classified: Mapping[str, str] | None = None
) -> tuple[str, list[Finding]]:
    """Replace each line or sentence of ``text`` that carries instructions for the model.

    The ingest-time detector (``ingestion.pipeline.injection``) judges a whole chunk; run on one
    sentence at a time its anchored rules (a sentence that opens with a task or a general
    question) also see what a chunk hides mid-line. ``classified`` maps the pieces the
    instruction classifier judged instructions (whitespace folded, as
    ``classifier_pieces`` gives them) to its reason. The model never reads what is removed, so
    the guarantee holds however obedient the model is; the cost is that a legitimate sentence
    the detectors misjudge is hidden from this answer.
    """
    from ingestion.pipeline.injection import injection_reason, pieces

    classified = classified or {}
    findings: list[Finding] = []
    lines = []
    for line in text.split("\n"):
        found, separators = pieces(line)
        kept = []
        for piece in found:
            reason = injection_reason(piece) or classified.get(" ".join(piece.split()), "")
            if reason:
                findings.append(Finding("passage_instruction", f"{reason}: {piece[:120]}"))
                kept.append(REMOVED_INSTRUCTION)
            else:
                kept.append(piece)
        if kept == found and injection_reason(line):  # only the whole line reads as one
            findings.append(Finding("passage_instruction", line[:160]))
            kept, separators = [REMOVED_INSTRUCTION], []
        lines.append("".join(p + s for p, s in zip(kept, [*separators, ""], strict=True)))
    return "\n".join(lines), findings
