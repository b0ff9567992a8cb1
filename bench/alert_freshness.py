"""Alert freshness: seconds from the POST of a reading that escalates a patient's NEWS2 to its alert on the queue.

``python -m bench.alert_freshness`` starts the emulators (SNS -> SQS with raw delivery in moto), PostgreSQL, the
real gateway and one vitals worker (``VITALSTREAM_FLUSH_SECONDS=2``). A background fleet keeps the worker busy
(50 monitored patients, 20 readings per second each, all NEWS2 parameters: every batch rescores their hours);
meanwhile 40 other patients, one every 0.5 s, post a normal snapshot and then the reading that makes their hour
``high``. A consumer long-polls the alert queue. Prints::

    freshness_alert_p50_s: <seconds>
    freshness_alert_p95_s: <seconds>   (target <= 5 s)
    freshness_alert_p95_vs_flush: <p95 / flush age, the same-run baseline of what batching alone costs>
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
from typing import Any

import asyncpg
import httpx
import orjson

from common.devices import register_device
from vitalstream.devstack.bootstrap import bootstrap
from vitalstream.devstack.clients import open_clients
from vitalstream.devstack.emulators import start_kinesalite, start_moto
from vitalstream.devstack.postgres import remove_data_dir, start_postgres
from vitalstream.devstack.processes import LOOPBACK, free_port, http_ok, spawn, stop_pid, wait_until
from vitalstream.devstack.stack import DEFAULT_NAMES, stack_env

BACKGROUND = 50
ESCALATING = 40
READINGS_PER_REQUEST = 20
FLUSH_SECONDS = 2.0
NORMAL = {"resp_rate": 16, "spo2": 97, "bp_systolic": 120, "heart_rate": 72, "body_temp": 37.0}
# Each step stays under the spike detector's per-metric floor (CONTRACT §4), so no reading is held as a
# possible spike: a deterioration, not an artefact. Scores 2 + 3 + 2 + 1 + 1 = 9 (high).
HIGH = {"resp_rate": 23, "spo2": 91, "bp_systolic": 91, "heart_rate": 96, "body_temp": 38.4}


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _background(client: httpx.AsyncClient, tokens: dict[str, str], stop: asyncio.Event) -> None:
    metrics = list(NORMAL)

    async def device(device_id: str, token: str) -> None:
        rng = random.Random(device_id)
        await asyncio.sleep(rng.random())
        while not stop.is_set():
            posted = time.time()
            now = datetime.now(UTC)
            readings = [
                {"device_id": device_id, "patient_id": f"bg-{device_id}", "metric": metrics[i % len(metrics)],
                 "value": NORMAL[metrics[i % len(metrics)]], "measured_at": _stamp(now - timedelta(milliseconds=i))}
                for i in range(READINGS_PER_REQUEST)
            ]  # fmt: skip
            await client.post("/v1/vitals", json={"readings": readings}, headers={"Authorization": f"Bearer {token}"})
            await asyncio.sleep(max(0.0, 1.0 - (time.time() - posted)))

    await asyncio.gather(*(device(d, t) for d, t in tokens.items()))


async def _escalate(client: httpx.AsyncClient, tokens: dict[str, str], posted: dict[str, float]) -> None:
    for device_id, token in tokens.items():
        patient = f"esc-{device_id}"
        now = datetime.now(UTC).replace(microsecond=0)
        if now.minute == 59 and now.second > 50:  # keep both posts in one hour
            await asyncio.sleep(11)
            now = datetime.now(UTC).replace(microsecond=0)
        headers = {"Authorization": f"Bearer {token}"}
        normal = [{"device_id": device_id, "patient_id": patient, "metric": m, "value": v,
                   "measured_at": _stamp(now - timedelta(seconds=2))} for m, v in NORMAL.items()]  # fmt: skip
        await client.post("/v1/vitals", json={"readings": normal}, headers=headers)
        await asyncio.sleep(0.25)
        high = [{"device_id": device_id, "patient_id": patient, "metric": m, "value": v,
                 "measured_at": _stamp(now)} for m, v in HIGH.items()]  # fmt: skip
        started = time.time()
        response = await client.post("/v1/vitals", json={"readings": high}, headers=headers)
        if response.status_code == 202:
            posted[patient] = started
        await asyncio.sleep(0.25)


async def _consume(sqs: Any, queue_url: str, seen: dict[str, float], done: asyncio.Event) -> None:
    while not done.is_set():
        response = await sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        now = time.time()
        messages = response.get("Messages", [])
        for message in messages:
            alert = orjson.loads(message["Body"])
            seen.setdefault(alert["patient_id"], now)
        if messages:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            await sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)


async def _measure(env: dict[str, str], log_dir: Path) -> tuple[list[float], int]:
    raised: dict[str, tuple[float, float]] = {}
    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, env["AWS_REGION"])
        await bootstrap(clients, DEFAULT_NAMES, env["VITALSTREAM_WAREHOUSE_URL"])
        background = [f"bg-{i:04d}" for i in range(BACKGROUND)]
        escalating = [f"esc-{i:04d}" for i in range(ESCALATING)]
        tokens = await asyncio.gather(
            *(register_device(clients.dynamodb, DEFAULT_NAMES.device_table, d, None) for d in background + escalating)
        )
        by_device = dict(zip(background + escalating, tokens, strict=True))
        queue_url = (await clients.sqs.get_queue_url(QueueName=DEFAULT_NAMES.alert_queue))["QueueUrl"]
        run_env = {**os.environ, **env, "VITALSTREAM_FLUSH_SECONDS": str(FLUSH_SECONDS),
                   "VITALSTREAM_LOG_LEVEL": "WARNING"}  # fmt: skip
        metrics_port = free_port()
        gateway = spawn("gateway", [sys.executable, "-m", "vitalstream", "gateway"], log_dir, env=run_env)
        worker = spawn("worker", [sys.executable, "-m", "vitalstream", "worker", "vitals"], log_dir,
                       env={**run_env, "VITALSTREAM_METRICS_PORT": str(metrics_port)})  # fmt: skip
        try:
            gateway_url = env["VITALSTREAM_GATEWAY_URL"]
            wait_until(lambda: http_ok(f"{gateway_url}/readyz"), 60, "gateway", gateway.pid, gateway.log)
            wait_until(lambda: http_ok(f"http://{LOOPBACK}:{metrics_port}/healthz"), 60, "worker", worker.pid,
                       worker.log)  # fmt: skip
            posted: dict[str, float] = {}
            seen: dict[str, float] = {}
            stop, done = asyncio.Event(), asyncio.Event()
            consumer = asyncio.create_task(_consume(clients.sqs, queue_url, seen, done))
            limits = httpx.Limits(max_connections=BACKGROUND + 10)
            async with httpx.AsyncClient(base_url=gateway_url, timeout=30, limits=limits) as client:
                load = asyncio.create_task(_background(client, {d: by_device[d] for d in background}, stop))
                await asyncio.sleep(3)  # the background load is flowing
                await _escalate(client, {d: by_device[d] for d in escalating}, posted)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not set(posted) <= set(seen):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                stop.set()
                await load
            done.set()
            await consumer
            conn = await asyncpg.connect(env["VITALSTREAM_WAREHOUSE_URL"])
            try:
                rows = await conn.fetch("SELECT patient_id, raised_at, published_at FROM deterioration_alerts")
            finally:
                await conn.close()
            for row in rows:
                if row["patient_id"] in posted and row["published_at"] is not None:
                    raised[row["patient_id"]] = (row["raised_at"].timestamp(), row["published_at"].timestamp())
        finally:
            stop_pid(gateway.pid)
            stop_pid(worker.pid, grace=30)
    latencies = sorted(seen[p] - posted[p] for p in posted if p in seen)
    to_raised = sorted(raised[p][0] - posted[p] for p in posted if p in raised)
    to_queue = sorted(seen[p] - raised[p][1] for p in posted if p in raised and p in seen)
    if to_raised and to_queue:
        print(f"# p50 POST -> alert row written {statistics.median(to_raised):.2f}s, "
              f"marked published -> on the queue {statistics.median(to_queue):.2f}s")  # fmt: skip
    return latencies, len(posted) - len(latencies)


def run() -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="vitalstream-bench-"))
    log_dir = base / "logs"
    kinesis, kinesis_url = start_kinesalite(log_dir, die_with_parent=True)
    moto, moto_url = start_moto(log_dir, die_with_parent=True)
    pg = start_postgres(log_dir, base, die_with_parent=True)
    env = stack_env(kinesis_url, moto_url, pg.url, f"http://{LOOPBACK}:{free_port()}")
    os.environ.update(env)
    try:
        latencies, missing = asyncio.run(_measure(env, log_dir))
    finally:
        stop_pid(kinesis.pid)
        stop_pid(moto.pid)
        stop_pid(pg.process.pid, sig=signal.SIGINT)
        remove_data_dir(pg.data_dir)
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"freshness_alert_p50_s: {p50:.2f}")
    print(f"freshness_alert_p95_s: {p95:.2f}")
    print(f"freshness_alert_p95_vs_flush: {p95 / FLUSH_SECONDS:.2f}")
    print(f"# {len(latencies)} escalations timed, {missing} without an alert within 30 s; flush {FLUSH_SECONDS}s")
    return {"freshness_alert_p50_s": p50, "freshness_alert_p95_s": p95}


if __name__ == "__main__":
    run()
