"""System checks: start-up fails on an unknown provider kind or a missing key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def chat_model_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    from agent.providers.registry import CHAT_MODEL_KINDS

    errors = []
    chains = {"RAG_CHAT_MODELS": settings.RAG_CHAT_MODELS}
    chains |= {f"RAG_CHAT_ROUTES[{r!r}]": c for r, c in settings.RAG_CHAT_ROUTES.items()}
    entries = [(f"{name}[{i}]", e) for name, chain in chains.items() for i, e in enumerate(chain)]
    for where, entry in entries:
        kind = entry.get("KIND")
        if kind not in CHAT_MODEL_KINDS:
            errors.append(Error(f"{where} has unknown KIND {kind!r}", id="agent.E001"))
        if kind == "openai" and not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
            errors.append(
                Error(
                    "an openai chat model needs OPENAI_API_KEY or OPENAI_BASE_URL", id="agent.E002"
                )
            )
    return errors


@register()
def prompt_registry(app_configs: Any, **kwargs: Any) -> list[Error]:
    """A released prompt version is immutable, and ``RAGAPP_PROMPT`` names one that loads."""
    from agent.pipeline.prompt import PROMPT_FOLDERS, prompt_load, prompt_lock_problems

    errors = [
        Error(
            problem, hint="add a new version file and run `manage.py prompt_lock`", id="agent.E010"
        )
        for folder in PROMPT_FOLDERS
        for problem in prompt_lock_problems(folder)
    ]
    try:
        prompt_load(settings.RAGAPP_PROMPT)
    except (LookupError, KeyError, ValueError) as exc:
        errors.append(Error(f"RAGAPP_PROMPT {settings.RAGAPP_PROMPT!r}: {exc}", id="agent.E011"))
    return errors
