"""A database of the eval's own, created for a run and dropped after it.

It lives on the configured server (the embedded default or ``DATABASE_URL``'s) under its own name,
the way Django's test runner makes its test database, so a run never reads or writes app data.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.db import connection

logger = logging.getLogger(__name__)

EVAL_DATABASE_NAME = "ragapp_eval"


def _drop(name: str) -> None:
    """Drop ``name`` even while another thread holds a session in it (the trace store's batch
    exporter keeps its own connection open)."""
    quoted = connection.ops.quote_name(name)
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


def _recreate(name: str) -> None:
    """Drop a leftover of a crashed run, create the database, enable pgvector in it.

    The extension comes first so the migrations never depend on their order to find it.
    """
    _drop(name)
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(name)}")
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


@contextlib.contextmanager
def eval_database(name: str = EVAL_DATABASE_NAME) -> Iterator[str]:
    """Create ``name``, migrate it, point the default connection at it, and drop it afterwards."""
    creation = connection.creation
    test_settings = connection.settings_dict.setdefault("TEST", {})
    previous_test_name = test_settings.get("NAME")
    test_settings["NAME"] = name
    original = connection.settings_dict["NAME"]
    try:
        _recreate(name)
        # keepdb: use the database just made (create_test_db then only migrates it).
        creation.create_test_db(verbosity=0, serialize=False, keepdb=True)
        logger.info("eval database created", extra={"database": name})
        try:
            yield name
        finally:
            # keepdb: Django only points the settings back; its plain DROP would fail on a
            # session another thread still holds.
            creation.destroy_test_db(original, verbosity=0, keepdb=True)
            _drop(name)
    finally:
        test_settings["NAME"] = previous_test_name
