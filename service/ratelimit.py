"""Per-device token buckets (``VITALSTREAM_DEVICE_RATE`` = ``RATE[:BURST]`` requests/s).

Contract: :meth:`RateLimiter.acquire` takes one token from the device's bucket and returns 0.0, or,
when the bucket is empty, takes nothing and returns the seconds until a token is available (the
``Retry-After`` of the 429); :meth:`RateLimiter.wait` tells the same without taking a token. The gateway
also keys one by source address to limit failed authentications (``VITALSTREAM_AUTH_FAILURE_RATE``).
Memory is bounded: buckets that have refilled completely carry no state and are dropped when the table
grows past ``max_devices``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket per device; ``clock`` is a monotonic clock in seconds (injectable for tests)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_devices: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_devices = max_devices
        self._buckets: dict[str, tuple[float, float]] = {}  # device -> (tokens, updated at)

    def acquire(self, device_id: str) -> float:
        """Take a token for ``device_id``: 0.0 if allowed, else seconds to wait before retrying."""
        now = self._clock()
        state = self._buckets.get(device_id)
        if state is None:
            if len(self._buckets) >= self._max_devices:
                self._evict_full(now)
            tokens = self.burst
        else:
            tokens = min(self.burst, state[0] + (now - state[1]) * self.rate)
        if tokens >= 1.0:
            self._buckets[device_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[device_id] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until ``key`` has a token (0.0 now), without taking one."""
        state = self._buckets.get(key)
        if state is None:
            return 0.0
        tokens = min(self.burst, state[0] + (self._clock() - state[1]) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _evict_full(self, now: float) -> None:
        """Drop buckets that have refilled to the burst (they are equivalent to no bucket)."""
        full = [
            device for device, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst
        ]
        for device in full:
            del self._buckets[device]
        if len(self._buckets) >= self._max_devices:  # all busy: forget the oldest half
            for device in list(self._buckets)[: self._max_devices // 2]:
                del self._buckets[device]
