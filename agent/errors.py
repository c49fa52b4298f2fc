"""Errors of the agent app (the shared ones live in ``ragapp.errors``)."""

from __future__ import annotations

from ragapp.errors import AppError


class RequestInProgress(AppError):
    """The same ``Idempotency-Key`` is still being answered."""

    status_code = 409
    default_code = "request_in_progress"
