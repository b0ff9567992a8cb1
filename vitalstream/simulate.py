"""``vitalstream simulate``: a device fleet posting to the gateway over HTTP(S).

Every device sends a snapshot request every ``1 / rate`` seconds (see ``loadtest.fleet``); a small
share of requests is sent twice, as a device retrying after a lost response would.
"""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import orjson

from common.settings import GatewaySettings
from loadtest.fleet import Device, clinical_fleet


async def _register(fleet: list[Device]) -> dict[str, str]:
    from common.aws import ClientFactory
    from common.devices import register_device

    settings = GatewaySettings()
    async with AsyncExitStack() as stack:
        dynamodb = await stack.enter_async_context(ClientFactory(settings.aws_region).client("dynamodb"))
        tokens = await asyncio.gather(
            *(register_device(dynamodb, settings.device_table, d.device_id, d.patient_id) for d in fleet)
        )
    return {device.device_id: token for device, token in zip(fleet, tokens, strict=True)}


async def _device_loop(
    device: Device,
    token: str,
    client: httpx.AsyncClient,
    rate: float,
    deadline: float | None,
    stop: asyncio.Event,
    stats: collections.Counter[str],
) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    await asyncio.sleep(device.rng.random() / rate)
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        body = orjson.dumps({"readings": device.snapshot(datetime.now(UTC))})
        sends = 2 if device.rng.random() < device.mix.retry_duplicate else 1
        for _ in range(sends):
            try:
                response = await client.post("/v1/vitals", content=body, headers=headers)
                stats[f"http_{response.status_code}"] += 1
                if response.status_code in (202, 422):
                    payload = response.json()
                    stats["readings_accepted"] += payload["accepted"]
                    stats["readings_rejected"] += len(payload["rejected"])
                if response.status_code in (429, 503):
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            except httpx.HTTPError:
                stats["transport_errors"] += 1
        stats["duplicate_sends"] += sends - 1
        await asyncio.sleep(1 / rate)


async def simulate(devices: int, rate: float, duration: float, seed: int | None) -> int:
    """Register the fleet's devices (fresh tokens: the registry keeps only hashes), then post until done."""
    settings = GatewaySettings()
    fleet = clinical_fleet(devices, seed if seed is not None else random.randrange(2**32))
    tokens = await _register(fleet)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + duration if duration > 0 else None
    stats: collections.Counter[str] = collections.Counter()
    limits = httpx.Limits(max_connections=min(200, devices), max_keepalive_connections=min(200, devices))
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=settings.gateway_url, limits=limits, timeout=30) as client:
        await asyncio.gather(
            *(_device_loop(d, tokens[d.device_id], client, rate, deadline, stop, stats) for d in fleet)
        )
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{key}={value}" for key, value in sorted(stats.items()))
    print(f"simulated {devices} devices for {elapsed:.1f}s: {summary}", flush=True)
    return 0


def run_simulation(devices: int, rate: float, duration: float, seed: int | None) -> int:
    if devices < 1 or rate <= 0 or duration < 0:
        print("simulate needs --devices >= 1, --rate > 0 and --duration >= 0", file=sys.stderr)
        return 2
    return asyncio.run(simulate(devices, rate, duration, seed))
