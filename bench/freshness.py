"""Freshness: seconds from POST to visible in ``fact_vitals`` at ~2,000 readings/s, flush age 2 s.

``python -m bench.freshness`` starts the emulators, PostgreSQL, the real gateway and one vitals worker
(``VITALSTREAM_FLUSH_SECONDS=2``), drives 100 devices each posting 20 readings per second for 30 s, and
polls the warehouse for each reading's first appearance. Prints::

    freshness_p50_s: <seconds>
    freshness_p95_s: <seconds>
    freshness_p95_vs_flush: <p95 / flush age, the same-run baseline of what batching alone costs>
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from common.devices import register_device
from vitalstream.devstack.bootstrap import bootstrap
from vitalstream.devstack.clients import open_clients
from vitalstream.devstack.emulators import start_kinesalite, start_moto
from vitalstream.devstack.postgres import remove_data_dir, start_postgres
from vitalstream.devstack.processes import LOOPBACK, free_port, http_ok, spawn, stop_pid, wait_until
from vitalstream.devstack.stack import DEFAULT_NAMES, stack_env

DEVICES = 100
READINGS_PER_REQUEST = 20
SECONDS = 30
FLUSH_SECONDS = 2.0


async def _drive(url: str, tokens: dict[str, str], sent: dict[tuple[str, datetime], float]) -> int:
    start = datetime.now(UTC).replace(microsecond=0)
    stop_at = time.monotonic() + SECONDS
    accepted = 0
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=DEVICES)) as client:

        async def device(device_id: str, token: str) -> None:
            nonlocal accepted
            rng = random.Random(device_id)
            level = 70.0
            tick = 0
            await asyncio.sleep(rng.random())
            while time.monotonic() < stop_at:
                readings = []
                for i in range(READINGS_PER_REQUEST):
                    level += rng.gauss(0, 0.3) + 0.02 * (70 - level)
                    at = start + timedelta(seconds=tick, milliseconds=50 * i)
                    readings.append(
                        {
                            "device_id": device_id,
                            "metric": "heart_rate",
                            "value": round(level, 1),
                            "measured_at": at.isoformat().replace("+00:00", "Z"),
                        }
                    )
                posted = time.time()
                response = await client.post(
                    "/v1/vitals", json={"readings": readings}, headers={"Authorization": f"Bearer {token}"}
                )
                if response.status_code == 202:
                    accepted += response.json()["accepted"]
                    for i in range(READINGS_PER_REQUEST):
                        sent[(device_id, start + timedelta(seconds=tick, milliseconds=50 * i))] = posted
                tick += 1
                await asyncio.sleep(max(0.0, 1.0 - (time.time() - posted)))

        await asyncio.gather(*(device(d, t) for d, t in tokens.items()))
    return accepted


async def _watch(warehouse_url: str, seen: dict[tuple[str, datetime], float], done: asyncio.Event) -> None:
    conn = await asyncpg.connect(warehouse_url)
    known: set[str] = set()
    try:
        while not done.is_set():
            batches = [r["batch_id"] for r in await conn.fetch("SELECT batch_id FROM load_audit")]
            new = [b for b in batches if b not in known]
            if new:
                now = time.time()
                rows = await conn.fetch("SELECT device_id, measured_at FROM fact_vitals WHERE batch_id = ANY($1)", new)
                for row in rows:
                    seen.setdefault((row["device_id"], row["measured_at"]), now)
                known.update(new)
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _measure(env: dict[str, str], log_dir: Path) -> tuple[float, float, int, int]:
    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, env["AWS_REGION"])
        await bootstrap(clients, DEFAULT_NAMES, env["VITALSTREAM_WAREHOUSE_URL"])
        devices = [f"fresh-{i:04d}" for i in range(DEVICES)]
        tokens = await asyncio.gather(
            *(register_device(clients.dynamodb, DEFAULT_NAMES.device_table, d, None) for d in devices)
        )
    run_env = {
        **os.environ,
        **env,
        "VITALSTREAM_FLUSH_SECONDS": str(FLUSH_SECONDS),
        "VITALSTREAM_LOG_LEVEL": "WARNING",
        "VITALSTREAM_SPIKE_HOLD_SECONDS": "60",
    }
    metrics_port = free_port()
    gateway = spawn("gateway", [sys.executable, "-m", "vitalstream", "gateway"], log_dir, env=run_env)
    worker = spawn(
        "worker",
        [sys.executable, "-m", "vitalstream", "worker", "vitals"],
        log_dir,
        env={**run_env, "VITALSTREAM_METRICS_PORT": str(metrics_port)},
    )
    try:
        wait_until(lambda: http_ok(f"{env['VITALSTREAM_GATEWAY_URL']}/readyz"), 60, "gateway", gateway.pid, gateway.log)
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{metrics_port}/healthz"), 60, "worker", worker.pid, worker.log)
        sent: dict[tuple[str, datetime], float] = {}
        seen: dict[tuple[str, datetime], float] = {}
        done = asyncio.Event()
        watcher = asyncio.create_task(_watch(env["VITALSTREAM_WAREHOUSE_URL"], seen, done))
        started = time.monotonic()
        accepted = await _drive(env["VITALSTREAM_GATEWAY_URL"], dict(zip(devices, tokens, strict=True)), sent)
        rate = accepted / (time.monotonic() - started)
        deadline = time.monotonic() + 30
        # The newest reading of each series may be held for the spike decision.
        while time.monotonic() < deadline and len(seen) < len(sent) - DEVICES:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        done.set()
        await watcher
    finally:
        stop_pid(gateway.pid)
        stop_pid(worker.pid, grace=30)
    latencies = sorted(seen[key] - sent[key] for key in sent if key in seen)
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return p50, p95, int(rate), len(sent) - len(latencies)


def run() -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="vitalstream-bench-"))
    log_dir = base / "logs"
    kinesis, kinesis_url = start_kinesalite(log_dir, die_with_parent=True)
    moto, moto_url = start_moto(log_dir, die_with_parent=True)
    pg = start_postgres(log_dir, base, die_with_parent=True)
    env = stack_env(kinesis_url, moto_url, pg.url, f"http://{LOOPBACK}:{free_port()}")
    os.environ.update(env)
    try:
        p50, p95, rate, missing = asyncio.run(_measure(env, log_dir))
    finally:
        stop_pid(kinesis.pid)
        stop_pid(moto.pid)
        stop_pid(pg.process.pid, sig=signal.SIGINT)
        remove_data_dir(pg.data_dir)
    print(f"freshness_p50_s: {p50:.2f}")
    print(f"freshness_p95_s: {p95:.2f}")
    print(f"freshness_p95_vs_flush: {p95 / FLUSH_SECONDS:.2f}")
    print(
        f"# {rate} readings/s accepted over {SECONDS}s, flush {FLUSH_SECONDS}s; {missing} readings not yet visible "
        "(held as the newest of their series, or late)"
    )
    return {"freshness_p50_s": p50, "freshness_p95_s": p95}


if __name__ == "__main__":
    run()
