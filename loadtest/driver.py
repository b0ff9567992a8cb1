"""Drive a fleet against the gateway over HTTP and journal every request's final outcome.

A device sends its requests one after the other. A request is retried with the *same body* until the
gateway gives a definitive answer (2xx/4xx other than 429) or the give-up time passes: on 429/503 after
``Retry-After``, on a broken connection or a 5xx after a short backoff, as a real device retrying after a
lost response would. So a retry may duplicate readings already in the stream: the pipeline must drop them.
The same policy serves the chaos runner (asyncio + httpx, here) and the locustfile (gevent, its own loop).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from loadtest.fleet import Device, Outgoing
from loadtest.journal import Journal
from loadtest.truth import Sent

DEFINITIVE = frozenset({200, 202, 400, 401, 403, 413, 415, 422})
RETRY_CAP_SECONDS = 2.0


def retry_delay(status: int | None, headers: dict[str, str] | None, attempt: int, rng: random.Random) -> float:
    """Seconds to wait before resending after a non-definitive answer (``status`` None: no answer)."""
    if status in (429, 503) and headers:
        try:
            wanted = float(headers.get("retry-after", "1"))
            return min(RETRY_CAP_SECONDS, max(0.05, wanted))
        except ValueError:
            pass
    backoff: float = min(RETRY_CAP_SECONDS, 0.1 * 2 ** min(attempt, 5))
    return backoff * (0.5 + rng.random())


def sent_record(device: Device, out: Outgoing, status: int | None, payload: Any, started: float, attempts: int) -> Sent:
    rejected = []
    if status in (202, 422) and isinstance(payload, dict):
        rejected = [(int(r["index"]), str(r["code"])) for r in payload.get("rejected", [])]
    return Sent(
        device_id=device.device_id,
        patient_id=device.patient_id,
        readings=out.readings,
        intents=out.intents,
        status=status,
        rejected=rejected,
        sent_at=started,
        done_at=time.time(),
        attempts=attempts,
        late=out.late,
        malformed_body=out.body is not None,
    )


@dataclass
class FleetStats:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    readings_sent: int = 0


PostFn = Callable[[bytes], Awaitable[tuple[int | None, Any, dict[str, str]]]]


async def deliver(
    post: PostFn, device: Device, out: Outgoing, journal: Journal, give_up_at: float, stats: FleetStats
) -> Sent:
    """Send ``out`` until a definitive answer or ``give_up_at`` (monotonic); journal and return the outcome."""
    body = out.body if out.body is not None else orjson.dumps({"readings": out.readings})
    started, attempts = time.time(), 0
    status: int | None = None
    payload: Any = None
    while True:
        attempts += 1
        t0 = time.monotonic()
        status, payload, headers = await post(body)
        stats.latencies.append(time.monotonic() - t0)
        stats.statuses[str(status) if status is not None else "transport_error"] += 1
        if status in DEFINITIVE:
            break
        if time.monotonic() >= give_up_at:
            status = None
            break
        await asyncio.sleep(retry_delay(status, headers, attempts, device.rng))
    sent = sent_record(device, out, status, payload, started, attempts)
    journal.write(sent)
    stats.readings_sent += len(out.readings)
    return sent


async def run_device(
    device: Device,
    post: PostFn,
    journal: Journal,
    stats: FleetStats,
    *,
    rate: float,
    until: float,
    give_up_at: float,
) -> None:
    """Snapshots every ``1 / rate`` s until ``until`` (monotonic), then the rest of the outbox."""
    await asyncio.sleep(device.rng.random() / rate)
    while time.monotonic() < until:
        tick = time.monotonic()
        if (bad := device.malformed_body()) is not None:
            await deliver(post, device, Outgoing([], [], body=bad), journal, give_up_at, stats)
        out = device.take(datetime.now(UTC))
        if out is not None:
            await deliver(post, device, out, journal, give_up_at, stats)
            if out.body is None and device.rng.random() < device.mix.retry_duplicate:
                await deliver(post, device, out, journal, give_up_at, stats)  # a retry after a lost response
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))
    out = device.flush(datetime.now(UTC))
    if out is not None:
        await deliver(post, device, out, journal, give_up_at, stats)


def http_post(client: httpx.AsyncClient, token: str) -> PostFn:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def post(body: bytes) -> tuple[int | None, Any, dict[str, str]]:
        try:
            response = await client.post("/v1/vitals", content=body, headers=headers)
        except httpx.HTTPError:
            return None, None, {}
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return response.status_code, payload, dict(response.headers)

    return post


async def run_fleet(
    gateway_url: str,
    fleet: list[Device],
    tokens: dict[str, str],
    journal: Journal,
    *,
    rate: float,
    duration: float,
    give_up_after: float = 90.0,
) -> FleetStats:
    """Every device of ``fleet`` for ``duration`` s; returns once each has its last answer (or gave up)."""
    stats = FleetStats()
    until = time.monotonic() + duration
    limits = httpx.Limits(max_connections=len(fleet), max_keepalive_connections=len(fleet))
    async with httpx.AsyncClient(base_url=gateway_url, limits=limits, timeout=httpx.Timeout(15.0)) as client:
        await asyncio.gather(
            *(
                run_device(
                    device,
                    http_post(client, tokens[device.device_id]),
                    journal,
                    stats,
                    rate=rate,
                    until=until,
                    give_up_at=until + give_up_after,
                )
                for device in fleet
            )
        )
    return stats
