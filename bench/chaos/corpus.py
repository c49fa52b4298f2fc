"""Synthetic support articles for the chaos run: distinct content (so no two are deduplicated),
a few chunks each, deterministic for a seed."""

from __future__ import annotations

import random

PRODUCTS = ["Nimbus Notes", "Nimbus Sync", "Nimbus Share", "Nimbus Vault", "Nimbus Mail"]
TOPICS = [
    "exporting notebooks",
    "resetting a password",
    "sharing a folder",
    "offline editing",
    "two-factor sign-in",
    "billing cycles",
    "restoring deleted notes",
    "tag management",
    "attachments",
    "keyboard shortcuts",
]
VERBS = ["open", "select", "choose", "press", "confirm", "review", "enable", "disable", "check"]
OBJECTS = ["Settings", "the sidebar", "the account page", "the export dialog", "the share menu"]


def _paragraph(rng: random.Random, product: str, topic: str, number: int) -> str:
    steps = " ".join(
        f"Step {i}: {rng.choice(VERBS)} {rng.choice(OBJECTS)} and wait {rng.randint(2, 90)} "
        f"seconds before code {rng.randint(1000, 9999)} appears."
        for i in range(1, rng.randint(3, 6))
    )
    return f"{product} handles {topic} in section {number}. {steps}"


def document_text(index: int, *, seed: int = 7, paragraphs: int = 6) -> tuple[str, str]:
    """``(file name, Markdown text)`` of article ``index``; unique per (seed, index)."""
    rng = random.Random(f"{seed}-{index}")
    product, topic = rng.choice(PRODUCTS), rng.choice(TOPICS)
    body = "\n\n".join(
        _paragraph(rng, product, topic, number) for number in range(1, paragraphs + 1)
    )
    title = f"{product}: {topic} (article {index})"
    return f"article-{seed}-{index:04d}.md", f"# {title}\n\n{body}\n"


def poison_text(*, seed: int = 7, paragraphs: int = 400) -> tuple[str, str]:
    """A long article: its processing takes seconds, long enough to be caught mid-way."""
    name, text = document_text(10_000, seed=seed, paragraphs=paragraphs)
    return f"poison-{name}", text
