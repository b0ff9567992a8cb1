"""Revocation at the real bound (CONTRACT §1: within 30 s): the token cache, with an injected clock, never serves
an answer of the registry more than the TTL after it was asked; the TTL setting cannot exceed 30 s; the failed-
authentication limiter's peek; the device registry's list line carries no secret."""

from __future__ import annotations

import asyncio

import pydantic
import pytest

from common.devices import Device, DeviceRecord
from common.settings import GatewaySettings, parse_duration
from service.auth import UNKNOWN, Authenticator
from service.ratelimit import RateLimiter
from tests.helpers.gateway import FakeRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowRegistry(FakeRegistry):
    """Answers as of the moment it was asked, after ``delay`` seconds of the injected clock."""

    def __init__(self, clock: Clock, delay: float, tokens: dict[str, Device]) -> None:
        super().__init__(tokens)
        self.clock = clock
        self.delay = delay

    async def authenticate(self, token: str) -> Device | None:
        answer = await super().authenticate(token)
        self.clock.now += self.delay
        return answer


async def test_a_revoked_token_is_refused_at_30_seconds_not_later() -> None:
    clock = Clock()
    registry = FakeRegistry({"t": Device("dev-1", None)})
    auth = Authenticator(registry, ttl=30, clock=clock)
    assert await auth.authenticate("t") is not None
    del registry.tokens["t"]  # revoked right after the registry was read
    clock.now += 29.999
    assert auth.cached("t") == Device("dev-1", None)  # still within the bound
    clock.now += 0.001  # exactly 30 s after the registry was asked
    assert auth.cached("t") is UNKNOWN
    assert await auth.authenticate("t") is None


async def test_the_ttl_runs_from_when_the_registry_was_asked() -> None:
    clock = Clock()
    registry = SlowRegistry(clock, delay=5.0, tokens={"t": Device("dev-1", None)})
    auth = Authenticator(registry, ttl=30, clock=clock)
    asked = clock.now
    assert await auth.authenticate("t") is not None  # the answer came 5 s later
    del registry.tokens["t"]
    clock.now = asked + 29.9
    assert auth.cached("t") is not UNKNOWN
    clock.now = asked + 30.0
    assert auth.cached("t") is UNKNOWN  # not asked + 5 + 30
    registry.delay = 0
    assert await auth.authenticate("t") is None


async def test_concurrent_askers_share_the_answer_and_its_age() -> None:
    clock = Clock()
    registry = SlowRegistry(clock, delay=1.0, tokens={"t": Device("dev-1", None)})
    auth = Authenticator(registry, ttl=30, clock=clock)
    asked = clock.now
    assert len(set(await asyncio.gather(*(auth.authenticate("t") for _ in range(5))))) == 1
    assert registry.lookups == 1
    clock.now = asked + 30
    assert auth.cached("t") is UNKNOWN


def test_the_token_cache_ttl_is_at_most_30_seconds() -> None:
    assert GatewaySettings().token_cache_seconds == 30.0
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(token_cache_seconds=31)
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(token_cache_seconds=0)


def test_rate_limiter_wait_peeks_without_taking() -> None:
    clock = Clock()
    limiter = RateLimiter(0.5, 2.0, clock=clock)
    assert limiter.wait("10.0.0.1") == 0.0
    assert [limiter.acquire("10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    assert limiter.wait("10.0.0.1") == pytest.approx(2.0)
    assert limiter.wait("10.0.0.1") == pytest.approx(2.0)  # peeking took nothing
    assert limiter.wait("10.0.0.2") == 0.0
    clock.now += 2.0
    assert limiter.wait("10.0.0.1") == 0.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 2_592_000), ("12h", 43_200), ("90m", 5400), ("45s", 45), ("1w", 604_800), ("1.5d", 129_600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0h", "infd", "nand", "30 days", "1y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(max_reading_age=text)


def test_settings_of_the_gateway_hardening() -> None:
    settings = GatewaySettings(max_reading_age="12h", gateway_fastpath="off", auth_failure_rate="1:5")
    assert settings.max_reading_age_us() == 12 * 3600 * 1_000_000
    assert settings.auth_failure_rate_and_burst() == (1.0, 5.0)
    with pytest.raises(pydantic.ValidationError):
        GatewaySettings(gateway_fastpath="maybe")


def test_the_list_line_has_no_secret() -> None:
    line = DeviceRecord("dev-1", None, True, 1_767_268_800).line()
    assert line == "dev-1\t-\trevoked\t2026-01-01T12:00:00Z"
