"""Per-caller rate limits on asking (DRF throttles over the shared cache). Every refusal is
logged as a guardrail event (stage input, rule rate_limit)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from agent.services import guardrail_record


class _AskThrottle(SimpleRateThrottle):
    rate_setting = ""  # the Django setting holding the rate, read per request

    def get_rate(self) -> str | None:
        return getattr(settings, self.rate_setting) or None

    def allow_request(self, request: Request, view: Any) -> bool:
        allowed = super().allow_request(request, view)
        if not allowed:
            user = request.user if request.user.is_authenticated else None
            guardrail_record(
                stage="input",
                rule="rate_limit",
                action="rejected",
                excerpt=f"{self.rate_setting}={self.rate}"
                + ("" if user else f" from {self.get_ident(request)}"),
                user=user,
            )
        return allowed


class AskUserThrottle(_AskThrottle):
    """RAGAPP_RATE_ASK per signed-in user (a user's tokens and sessions share one count)."""

    scope = "ask"
    rate_setting = "RAGAPP_RATE_ASK"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class AskAnonThrottle(_AskThrottle):
    """RAGAPP_RATE_ANON per client address for anonymous visitors (anonymous chat)."""

    scope = "ask_anon"
    rate_setting = "RAGAPP_RATE_ANON"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
