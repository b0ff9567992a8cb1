"""service.ratelimit and service.auth with injected clocks and a fake registry."""

from __future__ import annotations

import asyncio

import pytest

from common.devices import Device
from common.errors import TransientError
from service.auth import Authenticator
from service.ratelimit import RateLimiter
from tests.helpers.gateway import FakeRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3.0, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # per device
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 10
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refilled to the burst, not beyond


def test_idle_buckets_are_forgotten_when_the_table_is_full() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2.0, clock=clock, max_devices=10)
    for n in range(10):
        limiter.acquire(f"d{n}")
    clock.now += 5
    limiter.acquire("new")
    assert len(limiter._buckets) == 1


async def test_authenticator_caches_positive_and_negative_results() -> None:
    clock = Clock()
    registry = FakeRegistry({"good": Device("dev-1", "pat-1")})
    auth = Authenticator(registry, ttl=30, negative_ttl=2, clock=clock)
    assert await auth.authenticate("good") == Device("dev-1", "pat-1")
    assert await auth.authenticate("good") == Device("dev-1", "pat-1")
    assert await auth.authenticate("bad") is None
    assert await auth.authenticate("bad") is None
    assert registry.lookups == 2
    clock.now += 3  # the negative entry expired, the positive one not
    registry.tokens["bad"] = Device("dev-2", None)
    assert await auth.authenticate("bad") == Device("dev-2", None)
    assert await auth.authenticate("good") is not None
    assert registry.lookups == 3
    clock.now += 31
    del registry.tokens["good"]  # a re-registered device's old token stops working after the TTL
    assert await auth.authenticate("good") is None


async def test_concurrent_lookups_share_one_registry_call_and_failures_are_transient() -> None:
    registry = FakeRegistry({"t": Device("dev-1", None)})
    auth = Authenticator(registry)
    results = await asyncio.gather(*(auth.authenticate("t") for _ in range(20)))
    assert set(results) == {Device("dev-1", None)}
    assert registry.lookups == 1
    registry.fail = ConnectionError("registry down")
    with pytest.raises(TransientError):
        await auth.authenticate("other")
    registry.fail = None
    assert await auth.authenticate("other") is None  # failures are not cached
