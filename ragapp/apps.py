from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def cache_table_create(*, using: str = "default", **_: Any) -> None:
    """The database cache's table (rate-limit counters without Redis); a no-op for Redis or
    when it exists."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class RagappConfig(AppConfig):
    name = "ragapp"

    def ready(self) -> None:
        from django.apps import apps

        from ragapp.roles import roles_sync

        # post_migrate is sent only for apps with models, so hook onto agent's, the last app
        # whose permissions the roles use (auth creates them in its handler, connected earlier).
        post_migrate.connect(roles_sync, sender=apps.get_app_config("agent"))
        post_migrate.connect(cache_table_create, sender=apps.get_app_config("agent"))
