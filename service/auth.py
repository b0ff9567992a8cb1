"""Bearer-token authentication against the device registry, with a short-lived cache.

Contract:
- :meth:`Authenticator.authenticate` returns the :class:`~common.devices.Device` a token belongs to,
  or ``None`` (missing, malformed, unknown or wrong token → 401). The secret is checked by the
  registry with a constant-time hash compare (:func:`common.devices.verify`).
- Results are cached by the SHA-256 of the token (the token itself is never kept): positive results
  for ``ttl`` seconds, negative ones for ``negative_ttl`` seconds, counted from when the registry was
  asked (so a registry answer is never used more than ``ttl`` after it was read); concurrent look-ups of
  one token share a single registry call. A revoked, rotated or re-registered device's old token stops
  working within ``ttl`` (``VITALSTREAM_TOKEN_CACHE_SECONDS``, at most 30 s: CONTRACT §1).
- :meth:`Authenticator.cached` answers from the cache alone (``UNKNOWN`` when it cannot), so that a cached
  token costs no coroutine.
- A registry failure raises :class:`common.errors.TransientError` (→ 503), never a 401.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from common.devices import Device, authenticate
from common.errors import TransientError


class DeviceRegistry(Protocol):
    """Where tokens are checked: the DynamoDB registry, or a fake in tests and benchmarks."""

    async def authenticate(self, token: str) -> Device | None:
        """The device of a valid token, else None; raises on registry failure."""


class DynamoDBRegistry:
    """The device registry table (``VITALSTREAM_DEVICE_TABLE``) through an aiobotocore client."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._dynamodb = dynamodb
        self._table = table

    async def authenticate(self, token: str) -> Device | None:
        return await authenticate(self._dynamodb, self._table, token)


def _digest(token: str) -> bytes:
    """The cache key of a token: its SHA-256 (the token itself is never kept)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Unknown(enum.Enum):
    """Not in the cache: ask :meth:`Authenticator.authenticate`."""

    UNKNOWN = enum.auto()


UNKNOWN = Unknown.UNKNOWN


class Authenticator:
    """Caches a registry's answers per token digest; bounded to ``max_entries`` tokens."""

    def __init__(
        self,
        registry: DeviceRegistry,
        *,
        ttl: float = 30.0,
        negative_ttl: float = 2.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[bytes, tuple[float, Device | None]] = {}
        self._pending: dict[bytes, asyncio.Future[Device | None]] = {}

    def cached(self, token: str) -> Device | Unknown | None:
        """The cached answer for ``token`` (a device or None), or ``UNKNOWN``: no coroutine on the hot path."""
        return self._cached(_digest(token))

    async def authenticate(self, token: str) -> Device | None:
        """The device ``token`` covers, or None; raises ``TransientError`` if the registry fails."""
        key = _digest(token)
        cached = self._cached(key)
        if cached is not UNKNOWN:
            return cached
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Device | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        asked_at = self._clock()  # the answer is as old as the question: its TTL runs from here
        try:
            device = await self._registry.authenticate(token)
        except Exception as exc:
            error = TransientError(f"device registry unavailable ({type(exc).__name__})")
            future.set_exception(error)
            future.exception()  # mark retrieved: only concurrent waiters re-raise it
            raise error from exc
        else:
            future.set_result(device)
            self._store(key, device, asked_at)
            return device
        finally:
            del self._pending[key]

    def _cached(self, key: bytes) -> Device | Unknown | None:
        entry = self._cache.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return UNKNOWN

    def _store(self, key: bytes, device: Device | None, asked_at: float) -> None:
        now = self._clock()
        if len(self._cache) >= self._max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
        self._cache[key] = (asked_at + (self._ttl if device is not None else self._negative_ttl), device)
