"""A circuit breaker per provider/model, shared by every web and worker process.

closed -> (``RAGAPP_BREAKER_FAILURES`` failed turns in a row) -> open for
``RAGAPP_BREAKER_COOLDOWN_S`` -> half_open: exactly one process wins the trial call (a conditional
update); its success closes the breaker, its failure opens it again.

State lives in Redis when ``RAGAPP_REDIS_URL`` is set (transitions are mirrored to the
``CircuitBreaker`` table for the admin), otherwise in that table alone.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from agent.models import CircuitBreaker

logger = logging.getLogger(__name__)

State = CircuitBreaker.State


class BreakerStore(Protocol):
    """Where breaker state is kept; every method is safe under concurrent processes."""

    def allow(self, key: str) -> bool: ...

    def record_success(self, key: str) -> None: ...

    def record_failure(self, key: str, code: str) -> None: ...

    def states(self) -> dict[str, dict[str, Any]]: ...


class DatabaseBreakerStore:
    """Conditional UPDATEs on ``CircuitBreaker`` rows: correct with many processes."""

    def allow(self, key: str) -> bool:
        row = CircuitBreaker.objects.filter(key=key).values("state", "open_until").first()
        if row is None or row["state"] == State.CLOSED:
            return True
        now = timezone.now()
        if row["open_until"] and row["open_until"] > now:
            return False
        # Cool-down over: one caller claims the trial; the others keep skipping this model.
        claimed = CircuitBreaker.objects.filter(
            Q(open_until__lte=now) | Q(open_until__isnull=True), key=key
        ).update(state=State.HALF_OPEN, open_until=now + _cooldown(), updated_at=now)
        if claimed:
            logger.info("circuit breaker half-open: trial call", extra={"breaker": key})
        return bool(claimed)

    def record_success(self, key: str) -> None:
        changed = (
            CircuitBreaker.objects.filter(key=key)
            .exclude(state=State.CLOSED, failures=0)
            .update(state=State.CLOSED, failures=0, open_until=None, updated_at=timezone.now())
        )
        if changed:
            logger.info("circuit breaker closed", extra={"breaker": key})

    def record_failure(self, key: str, code: str) -> None:
        now = timezone.now()
        CircuitBreaker.objects.get_or_create(key=key)
        CircuitBreaker.objects.filter(key=key).update(
            failures=F("failures") + 1, last_error=code[:50], updated_at=now
        )
        opened = CircuitBreaker.objects.filter(
            Q(failures__gte=settings.RAGAPP_BREAKER_FAILURES) | Q(state=State.HALF_OPEN),
            key=key,
        ).update(state=State.OPEN, open_until=now + _cooldown(), updated_at=now)
        if opened:
            logger.warning("circuit breaker open", extra={"breaker": key, "code": code})

    def states(self) -> dict[str, dict[str, Any]]:
        return {
            row.key: {
                "state": _effective_state(row.state, row.open_until),
                "failures": row.failures,
                "last_error": row.last_error,
            }
            for row in CircuitBreaker.objects.all()
        }


class RedisBreakerStore:
    """Keys ``ragapp:breaker:<key>:failures`` and ``...:open`` (with a TTL of the cool-down);
    ``...:trial`` is taken with SET NX so exactly one process makes the half-open trial call."""

    PREFIX = "ragapp:breaker:"

    def __init__(self, url: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self.database = DatabaseBreakerStore()  # the admin's mirror of transitions

    def _k(self, key: str, part: str) -> str:
        return f"{self.PREFIX}{key}:{part}"

    def allow(self, key: str) -> bool:
        failures, is_open = self.redis.mget(self._k(key, "failures"), self._k(key, "open"))
        if is_open:
            return False
        if int(failures or 0) < settings.RAGAPP_BREAKER_FAILURES:
            return True
        ttl_ms = int(_cooldown().total_seconds() * 1000)
        return bool(self.redis.set(self._k(key, "trial"), "1", nx=True, px=ttl_ms))

    def record_success(self, key: str) -> None:
        removed = self.redis.delete(
            self._k(key, "failures"), self._k(key, "open"), self._k(key, "trial")
        )
        if removed:
            self.database.record_success(key)

    def record_failure(self, key: str, code: str) -> None:
        failures = int(self.redis.incr(self._k(key, "failures")))
        if failures >= settings.RAGAPP_BREAKER_FAILURES:
            ttl_ms = int(_cooldown().total_seconds() * 1000)
            pipe = self.redis.pipeline()
            pipe.set(self._k(key, "open"), code or "1", px=ttl_ms)
            pipe.delete(self._k(key, "trial"))
            pipe.execute()
        self.database.record_failure(key, code)

    def states(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for raw in self.redis.scan_iter(f"{self.PREFIX}*:failures", count=100):
            key = raw.decode()[len(self.PREFIX) : -len(":failures")]
            failures, is_open, trial = self.redis.mget(
                raw, self._k(key, "open"), self._k(key, "trial")
            )
            state = State.OPEN if is_open else State.HALF_OPEN if trial else State.CLOSED
            if state == State.CLOSED and int(failures or 0) >= settings.RAGAPP_BREAKER_FAILURES:
                state = State.HALF_OPEN  # cool-down over, waiting for a trial call
            found[key] = {"state": str(state), "failures": int(failures or 0)}
        return found


def _cooldown() -> timedelta:
    return timedelta(seconds=settings.RAGAPP_BREAKER_COOLDOWN_S)


def _effective_state(state: str, open_until: Any) -> str:
    if state == State.OPEN and open_until and open_until <= timezone.now():
        return str(State.HALF_OPEN)  # the next call is the trial
    return str(state)


@cache
def _store(redis_url: str) -> BreakerStore:
    return RedisBreakerStore(redis_url) if redis_url else DatabaseBreakerStore()


def breaker_store() -> BreakerStore:
    """The configured store, built once per process (per URL, so tests can switch)."""
    return _store(settings.RAGAPP_REDIS_URL)


def breaker_key(provider: str, model: str) -> str:
    return f"{provider}/{model}"


def breaker_allow(*, provider: str, model: str) -> bool:
    """False while the model's breaker is open: skip it without calling the provider.

    A store that cannot be reached fails open (the call goes ahead): the breaker protects the
    provider, it must never be the reason nobody gets an answer.
    """
    try:
        return breaker_store().allow(breaker_key(provider, model))
    except Exception:  # noqa: BLE001 - e.g. Redis down; logged, and the call goes ahead
        logger.exception("circuit breaker store unavailable; allowing the call")
        return True


def breaker_record(*, provider: str, model: str, ok: bool, code: str = "") -> None:
    try:
        store = breaker_store()
        key = breaker_key(provider, model)
        if ok:
            store.record_success(key)
        else:
            store.record_failure(key, code)
    except Exception:  # noqa: BLE001 - see breaker_allow
        logger.exception("circuit breaker store unavailable; state not recorded")


def breaker_states() -> dict[str, dict[str, Any]]:
    """Every known breaker's state, for /readyz and the admin."""
    return breaker_store().states()
