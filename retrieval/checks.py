"""System checks: start-up fails on an unknown embedder or reranker kind."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def retrieval_provider_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    from retrieval.providers.registry import EMBEDDERS

    if settings.RAGAPP_EMBEDDER not in EMBEDDERS:
        known = ", ".join(sorted(EMBEDDERS))
        return [
            Error(
                f"RAGAPP_EMBEDDER is {settings.RAGAPP_EMBEDDER!r}; expected one of {known}",
                id="retrieval.E001",
            )
        ]
    return []
