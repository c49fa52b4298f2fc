"""Renders every API error as ``{"error": {"code", "message", "extra"}}``."""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ragapp.errors import AppError


def error_body(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "extra": extra or {}}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, AppError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = error_body("invalid_input", "The request is not valid.", {"fields": response.data})
    elif isinstance(exc, exceptions.Throttled):  # DRF has set Retry-After already
        wait = math.ceil(exc.wait or 0)
        body = error_body(
            "rate_limited",
            f"Too many requests; try again in {wait} seconds.",
            {"retry_after_s": wait},
        )
    else:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        code = getattr(exc, "default_code", "error")
        if response.status_code == status.HTTP_401_UNAUTHORIZED:
            code = "not_authenticated"
        body = error_body(str(code), str(detail) or "Request failed.")
    response.data = body
    return response
