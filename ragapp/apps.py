from __future__ import annotations

from django.apps import AppConfig


class RagappConfig(AppConfig):
    name = "ragapp"
