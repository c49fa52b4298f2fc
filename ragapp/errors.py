"""One error type for the whole app; the DRF handler renders it as ``{"error": {...}}``."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status_code = 400
    default_code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.extra = extra or {}


class InvalidInput(AppError):
    status_code = 400
    default_code = "invalid_input"


class NotFound(AppError):
    status_code = 404
    default_code = "not_found"


class QuotaExceeded(AppError):
    status_code = 429
    default_code = "quota_exceeded"


class ProviderError(AppError):
    """A model or embedding provider failed. ``permanent`` errors are not worth retrying."""

    status_code = 502
    default_code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message, code=code, extra=extra)
        self.permanent = permanent
