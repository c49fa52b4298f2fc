"""The golden set: one JSON Lines file per category under ``evals/cases/``.

The first line of each file is its header, ``{"category": ..., "version": N}``; every other line is
one case. Bump the version when a case changes meaning (adding a case needs no bump, since cases
are compared by id). Pure loading and validation: no ORM, no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CASES_DIR = Path(__file__).resolve().parent / "cases"
# "declined": refused or handed to a person, anything but an answer (e.g. an injection attempt).
EXPECTATIONS = ("answered", "refused", "declined", "any")
COLLECTIONS = ("sample", "messy", "poisoned")
_CASE_FIELDS = {
    "id",
    "question",
    "expect",
    "collection",
    "history",
    "source",
    "evidence",
    "facts",
    "forbidden",
    "notes",
}


class GoldenSetError(ValueError):
    """A case file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Case:
    """One question and what a correct reply looks like.

    ``source`` is the expected document's file name, ``evidence`` a phrase the cited passage must
    contain, ``facts`` phrases the answer text must contain, ``forbidden`` strings that must never
    appear in the reply (canaries, injected markers, links). ``history`` holds earlier questions
    asked in the same conversation before ``question``.
    """

    id: str
    category: str
    question: str
    expect: str
    collection: str = "sample"
    history: tuple[str, ...] = ()
    source: str = ""
    evidence: str = ""
    facts: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    notes: str = ""


@dataclass(frozen=True)
class GoldenSet:
    cases: list[Case]
    versions: dict[str, int] = field(default_factory=dict)  # category -> file version

    def select(
        self, *, ids: list[str] | None = None, categories: list[str] | None = None
    ) -> GoldenSet:
        """A subset by case id and/or category; unknown ids are an error, not a silent no-op."""
        known = {c.id for c in self.cases}
        missing = sorted(set(ids or []) - known)
        if missing:
            raise GoldenSetError(f"no such case(s): {', '.join(missing)}")
        chosen = [
            c
            for c in self.cases
            if (not ids or c.id in ids) and (not categories or c.category in categories)
        ]
        return GoldenSet(cases=chosen, versions=self.versions)


def case_parse(raw: dict, *, category: str, where: str) -> Case:  # type: ignore[type-arg]
    """One case from its JSON object, checked field by field."""
    unknown = set(raw) - _CASE_FIELDS
    if unknown:
        raise GoldenSetError(f"{where}: unknown field(s) {sorted(unknown)}")
    for name in ("id", "question", "expect"):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise GoldenSetError(f"{where}: {name!r} must be a non-empty string")
    if raw["expect"] not in EXPECTATIONS:
        raise GoldenSetError(f"{where}: expect must be one of {EXPECTATIONS}")
    collection = raw.get("collection", "sample")
    if collection not in COLLECTIONS:
        raise GoldenSetError(f"{where}: collection must be one of {COLLECTIONS}")
    lists = {}
    for name in ("history", "facts", "forbidden"):
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise GoldenSetError(f"{where}: {name!r} must be a list of non-empty strings")
        lists[name] = tuple(value)
    if raw["expect"] == "answered" and not (raw.get("source") and raw.get("evidence")):
        raise GoldenSetError(f"{where}: an answerable case needs 'source' and 'evidence'")
    if raw["expect"] in ("refused", "declined") and (raw.get("evidence") or lists["facts"]):
        raise GoldenSetError(f"{where}: a case that must not be answered has no evidence or facts")
    return Case(
        id=raw["id"],
        category=category,
        question=raw["question"],
        expect=raw["expect"],
        collection=collection,
        history=lists["history"],
        source=raw.get("source", ""),
        evidence=raw.get("evidence", ""),
        facts=lists["facts"],
        forbidden=lists["forbidden"],
        notes=raw.get("notes", ""),
    )


def cases_file_load(path: Path) -> tuple[str, int, list[Case]]:
    """``(category, version, cases)`` of one JSON Lines file."""
    lines = [
        (number, line)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if line.strip()
    ]
    if not lines:
        raise GoldenSetError(f"{path.name}: empty file")
    parsed = []
    for number, line in lines:
        try:
            parsed.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise GoldenSetError(f"{path.name}:{number}: not JSON ({exc.msg})") from exc
    (_, header), body = parsed[0], parsed[1:]
    if set(header) != {"category", "version"} or not isinstance(header["version"], int):
        raise GoldenSetError(f"{path.name}:1: the header must be {{'category', 'version': int}}")
    category = header["category"]
    cases = [
        case_parse(raw, category=category, where=f"{path.name}:{number}") for number, raw in body
    ]
    return category, header["version"], cases


def golden_set_load(folder: Path = CASES_DIR) -> GoldenSet:
    """Every ``*.jsonl`` file in ``folder``; case ids are unique across the whole set."""
    cases: list[Case] = []
    versions: dict[str, int] = {}
    for path in sorted(folder.glob("*.jsonl")):
        category, version, file_cases = cases_file_load(path)
        if category in versions:
            raise GoldenSetError(f"{path.name}: category {category!r} is defined twice")
        versions[category] = version
        cases.extend(file_cases)
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise GoldenSetError(f"duplicate case id {case.id!r}")
        seen.add(case.id)
    return GoldenSet(cases=cases, versions=versions)
