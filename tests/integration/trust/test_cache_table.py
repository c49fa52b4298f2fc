"""Without Redis the rate-limit counters live in a database table that every migrate creates."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_migrate_creates_the_cache_table_the_embedded_default_counts_in():
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE ragapp_cache")
    call_command("migrate", interactive=False, verbosity=0)
    cache.set("probe", 1)
    assert cache.get("probe") == 1
    assert "ragapp_cache" in connection.introspection.table_names()
