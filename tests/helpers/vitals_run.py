"""Drive a generated dataset through the real gateway and vitals worker and collect what landed."""

from __future__ import annotations

import asyncio
import io
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pyarrow.parquet as pq

from common.devices import register_device
from tests.helpers.processes import Role, gateway_role, running, worker_role
from tests.helpers.vitals_dataset import Dataset, Key

FAST_WORKER_ENV = {
    "VITALSTREAM_FLUSH_SECONDS": "1",
    "VITALSTREAM_SPIKE_HOLD_SECONDS": "3",
    "VITALSTREAM_LEASE_SECONDS": "3",
}


@dataclass
class Landed:
    fact: dict[Key, tuple[float, str]]  # value, message_id
    quarantine: dict[Key, str]  # reason
    processed: dict[Key, float]
    audit: dict[str, int]
    accepted: int
    worker_starts: int = 1


async def register(clients: Any, table: str, dataset: Dataset) -> dict[str, str]:
    devices = sorted({device for device, _ in dataset.phase1 + dataset.phase2})
    tokens = await asyncio.gather(*(register_device(clients.dynamodb, table, d, f"pt-{d}") for d in devices))
    return dict(zip(devices, tokens, strict=True))


async def post_all(url: str, tokens: dict[str, str], posts: list[tuple[str, dict[str, Any]]]) -> int:
    """POST every body (8 at a time, in order per device); returns readings accepted."""
    accepted = 0
    semaphore = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def post(device: str, body: dict[str, Any]) -> int:
            async with semaphore:
                for _ in range(50):
                    response = await client.post(
                        "/v1/vitals", json=body, headers={"Authorization": f"Bearer {tokens[device]}"}
                    )
                    if response.status_code in (429, 503):
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                        continue
                    assert response.status_code == 202, response.text
                    payload = response.json()
                    assert payload["rejected"] == [], payload
                    return int(payload["accepted"])
            raise AssertionError("gateway kept refusing")

        by_device: dict[str, list[dict[str, Any]]] = {}
        for device, body in posts:
            by_device.setdefault(device, []).append(body)

        async def device_posts(device: str, bodies: list[dict[str, Any]]) -> int:
            return sum([await post(device, body) for body in bodies])

        accepted = sum(await asyncio.gather(*(device_posts(d, b) for d, b in by_device.items())))
    return accepted


async def audit_totals(warehouse_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(warehouse_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS batches, coalesce(sum(rows_in),0) AS rows_in, coalesce(sum(rows_loaded),0) AS loaded,"
            " coalesce(sum(rows_quarantined),0) AS quarantined, coalesce(sum(rows_duplicate),0) AS duplicate"
            " FROM load_audit WHERE pipeline = 'vitals'"
        )
        return {key: int(value) for key, value in dict(row).items()}
    finally:
        await conn.close()


async def wait_settled(warehouse_url: str, accepted: int, within: float = 90) -> dict[str, int]:
    """Wait until every accepted reading is accounted for in load_audit."""
    deadline = time.monotonic() + within
    totals: dict[str, int] = {}
    while time.monotonic() < deadline:
        totals = await audit_totals(warehouse_url)
        if totals["loaded"] + totals["quarantined"] + totals["duplicate"] >= accepted:
            return totals
        await asyncio.sleep(0.5)
    raise AssertionError(f"pipeline did not settle: accepted={accepted} audit={totals}")


async def collect(clients: Any, bucket: str, warehouse_url: str, accepted: int) -> Landed:
    conn = await asyncpg.connect(warehouse_url)
    try:
        fact = {
            (r["device_id"], r["metric"], r["measured_at"]): (float(r["value"]), r["message_id"])
            for r in await conn.fetch("SELECT device_id, metric, measured_at, value, message_id FROM fact_vitals")
        }
        fact_count = int(await conn.fetchval("SELECT count(*) FROM fact_vitals"))
        assert fact_count == len(fact)
        quarantine = {
            (r["device_id"], r["metric"], r["measured_at"]): r["reason"]
            for r in await conn.fetch("SELECT device_id, metric, measured_at, reason FROM vitals_quarantine")
        }
    finally:
        await conn.close()
    processed: dict[Key, float] = {}
    rows_seen = 0
    paginator = clients.s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix="processed/vitals/"):
        for obj in page.get("Contents", []):
            body = await (await clients.s3.get_object(Bucket=bucket, Key=obj["Key"]))["Body"].read()
            table = pq.read_table(io.BytesIO(body)).to_pylist()
            rows_seen += len(table)
            for row in table:
                at: datetime = row["measured_at"]
                processed[(row["device_id"], row["metric"], at)] = float(row["value"])
    assert rows_seen == len(processed), "a reading appears twice in the processed zone"
    return Landed(fact, quarantine, processed, await audit_totals(warehouse_url), accepted)


async def run(
    clients: Any,
    env: dict[str, str],
    names: Any,
    warehouse_url: str,
    dataset: Dataset,
    log_dir: Path,
    kills: int = 0,
    seed: int = 5,
) -> Landed:
    """Post both phases through a real gateway into a real worker; SIGKILL the worker ``kills`` times."""
    tokens = await register(clients, names.device_table, dataset)
    worker_env = {**env, **FAST_WORKER_ENV}
    gateway = gateway_role(env, log_dir)
    worker = worker_role("vitals", worker_env, log_dir)
    rng = random.Random(seed)
    with running(gateway, worker):
        killer = asyncio.create_task(_kill_loop(worker, kills, rng)) if kills else None
        accepted = await post_all(gateway.health_url.removesuffix("/readyz"), tokens, dataset.phase1)
        if killer:
            await killer
        await wait_settled(warehouse_url, accepted)
        accepted += await post_all(gateway.health_url.removesuffix("/readyz"), tokens, dataset.phase2)
        await wait_settled(warehouse_url, accepted)
    landed = await collect(clients, names.bucket, warehouse_url, accepted)
    landed.worker_starts = len(worker.history)
    return landed


async def _kill_loop(worker: Role, kills: int, rng: random.Random) -> None:
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        worker.kill()
        await asyncio.to_thread(worker.start)
