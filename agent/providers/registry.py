"""Builds the chat models named in ``settings.RAG_CHAT_MODELS``, once per process."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from django.conf import settings

from agent.providers.protocols import ChatModel

CHAT_MODEL_KINDS = {
    "openai": "agent.providers.openai.OpenAIChatModel",
    "extractive": "agent.providers.extractive.ExtractiveChatModel",
}


def _build(entry: dict) -> ChatModel:  # type: ignore[type-arg]
    module_name, _, class_name = CHAT_MODEL_KINDS[entry["KIND"]].rpartition(".")
    cls = getattr(import_module(module_name), class_name)
    return cls(**entry.get("OPTIONS", {}))  # type: ignore[no-any-return]


@cache
def chat_models(route: str = "") -> tuple[ChatModel, ...]:
    """The fallback chain of ``route`` (``RAG_CHAT_ROUTES``), else the default chain, in order."""
    entries = settings.RAG_CHAT_ROUTES.get(route) or settings.RAG_CHAT_MODELS
    return tuple(_build(entry) for entry in entries)


def chat_routes() -> list[str]:
    return sorted(settings.RAG_CHAT_ROUTES)
