"""NEWS2 and deterioration alerts end to end: the real gateway and vitals worker processes, moto SNS -> SQS.

- Patients whose readings sit on both sides of every chart boundary get exactly the reference scores; a
  quarantined spike does not change a score; a late reading that is the hour's latest does, an older one not.
- Alerts arrive on the subscribed queue once per escalation, none for low/low-medium.
- SIGKILL of the worker after the commit that raised alerts, while SNS does not answer: after a restart every
  alert is published, ``deterioration_alerts`` holds no duplicate, the queue sees every ``alert_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from common.devices import register_device
from schemas.arrow import NEWS2_PARAMETERS
from schemas.news2 import CHART
from tests.conftest import Resources
from tests.helpers import vitals_run
from tests.helpers.news2 import BOUNDARY_VALUES, reference_scores
from tests.helpers.processes import gateway_role, running, worker_role
from vitalstream.devstack.clients import AwsClients
from workers.warehouse.news2_sql import alert_id

pytestmark = pytest.mark.e2e

METRIC = {p.name: p.metric for p in CHART}
NORMAL = {"rr": 16.0, "spo2": 98.0, "sbp": 120.0, "pulse": 70.0, "temp": 37.0}


def _hour0() -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def _reading(device: str, patient: str, metric: str, value: float, at: datetime) -> dict[str, Any]:
    return {"device_id": device, "patient_id": patient, "metric": metric, "value": value,
            "measured_at": at.isoformat().replace("+00:00", "Z")}  # fmt: skip


def _hour_body(device: str, patient: str, values: dict[str, float], at: datetime) -> dict[str, Any]:
    return {"readings": [_reading(device, patient, METRIC[p], v, at) for p, v in values.items()]}


async def _fetch(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def _until(url: str, sql: str, check: Any, within: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = await _fetch(url, sql)
        if check(rows):
            return rows
        await asyncio.sleep(0.3)
    raise AssertionError(f"not reached within {within}s: {sql!r} -> {rows[:5]}")


async def _register(clients: AwsClients, table: str, devices: list[str]) -> dict[str, str]:
    tokens = await asyncio.gather(*(register_device(clients.dynamodb, table, d, None) for d in devices))
    return dict(zip(devices, tokens, strict=True))


async def _receive_all(
    clients: AwsClients, queue: str, settle: float = 3.0, within: float = 60
) -> list[dict[str, Any]]:
    """Every message on the queue (received and deleted) until none came for ``settle`` seconds."""
    url = (await clients.sqs.get_queue_url(QueueName=queue))["QueueUrl"]
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < settle:
        response = await clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        messages = response.get("Messages", [])
        if messages:
            quiet_since = time.monotonic()
            out += [orjson.loads(m["Body"]) for m in messages]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            await clients.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    return out


def _boundary_patients() -> list[tuple[str, dict[str, float]]]:
    out = [(f"nb-{p}-{i}", {**NORMAL, p: v}) for p, values in BOUNDARY_VALUES.items() for i, v in enumerate(values)]
    out.append(("nb-medium", {"rr": 21, "spo2": 94, "sbp": 105, "pulse": 91, "temp": 38.05}))  # 2+1+1+1+1 = 6
    out.append(("nb-high", {"rr": 25, "spo2": 91, "sbp": 100, "pulse": 131, "temp": 39.1}))
    return out


async def test_scores_quarantine_late_readings_and_alerts_on_the_queue(
    clients: AwsClients, resources: Resources, tmp_path: Path
) -> None:
    url = resources.warehouse_url
    h0 = _hour0()
    patients = _boundary_patients()
    posts = [(f"dev-{p}", _hour_body(f"dev-{p}", p, v, h0 + timedelta(seconds=60))) for p, v in patients]
    # A bedside monitor whose newest reading of hour 0 is a spike, decided by its next reading in hour 1.
    spike = [_reading("dev-sp", "sp", "heart_rate", v, h0 + timedelta(seconds=s))
             for s, v in ((3500, 70), (3550, 71), (3580, 70), (3599, 165), (3610, 71))]  # fmt: skip
    posts.append(("dev-sp", {"readings": spike}))
    tokens = await _register(clients, resources.names.device_table, sorted({d for d, _ in posts}))
    env = {**resources.env, **vitals_run.FAST_WORKER_ENV}
    gateway = gateway_role(resources.env, tmp_path)
    worker = worker_role("vitals", env, tmp_path)
    with running(gateway, worker):
        base = gateway.health_url.removesuffix("/readyz")
        await vitals_run.post_all(base, tokens, posts)
        expected_rows = len(patients) + 2  # the spike patient: hours 0 and 1
        await _until(url, "SELECT 1 FROM news2_hourly", lambda r: len(r) == expected_rows, within=60)
        await _until(url, "SELECT 1 FROM vitals_quarantine WHERE reason = 'spike'", lambda r: len(r) == 1, 30)
        table = {(r["patient_id"], r["hour_start"]): r for r in await _fetch(url, "SELECT * FROM news2_hourly")}
        for patient, values in patients:
            row = table[(patient, h0)]
            expected = reference_scores(dict(values))
            assert {k: row[k] for k in expected} == expected, (patient, values)
            assert [row[p] for p in NEWS2_PARAMETERS] == [values[p] for p in NEWS2_PARAMETERS]
        assert (table[("sp", h0)]["pulse"], table[("sp", h0)]["score_pulse"]) == (70.0, 0)  # not the spike

        # Late readings of a normal patient: an older one changes nothing, the hour's latest rescores.
        late = "nb-rr-0"  # rr 8 (score 3): low-medium
        older = _hour_body(f"dev-{late}", late, {"pulse": 135}, h0 + timedelta(seconds=30))
        await vitals_run.post_all(base, tokens, [(f"dev-{late}", older)])
        newer = _hour_body(f"dev-{late}", late, {"spo2": 91, "pulse": 120}, h0 + timedelta(seconds=90))
        await _until(url, "SELECT 1 FROM fact_vitals WHERE value = 135", lambda r: len(r) == 1, 30)
        assert (await _fetch(url, "SELECT total FROM news2_hourly WHERE patient_id = $1", late))[0]["total"] == 3
        await vitals_run.post_all(base, tokens, [(f"dev-{late}", newer)])
        rows = await _until(
            url, f"SELECT total, risk FROM news2_hourly WHERE patient_id = '{late}'",
            lambda r: r and r[0]["total"] == 8, within=30,
        )  # fmt: skip
        assert rows[0]["risk"] == "high"  # 3 + 3 + 2: straight from low-medium to high
        await _until(url, "SELECT 1 FROM deterioration_alerts WHERE published_at IS NULL", lambda r: not r, 30)
        messages = await _receive_all(clients, resources.names.alert_queue)

    expected_alerts = {
        (p, str(reference_scores(dict(v))["risk"])) for p, v in patients
        if reference_scores(dict(v))["risk"] in ("medium", "high")
    } | {(late, "high")}  # fmt: skip
    assert {("nb-medium", "medium"), ("nb-high", "high")} <= expected_alerts
    assert sorted((m["patient_id"], m["risk"]) for m in messages) == sorted(expected_alerts)  # once each
    for message in messages:
        assert message["alert_id"] == alert_id(message["patient_id"], h0, message["risk"])
        assert message["hour_start"] == h0.isoformat().replace("+00:00", "Z")
        assert set(message["scores"]) == set(NEWS2_PARAMETERS)
    stored = await _fetch(url, "SELECT alert_id FROM deterioration_alerts")
    assert sorted(r["alert_id"] for r in stored) == sorted(m["alert_id"] for m in messages)


@contextlib.contextmanager
def _unresponsive_endpoint() -> Iterator[str]:
    """A TCP endpoint that accepts connections and never answers (SNS hanging after the commit)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


async def test_alerts_committed_before_a_sigkill_are_published_after_restart(
    clients: AwsClients, resources: Resources, tmp_path: Path
) -> None:
    url = resources.warehouse_url
    h0 = _hour0()
    sick = {f"k-{i}": {"rr": 25, "spo2": 91, "sbp": 95, "pulse": 120, "temp": 38.5} for i in range(3)}  # high
    posts = [(f"dev-{p}", _hour_body(f"dev-{p}", p, v, h0 + timedelta(seconds=60))) for p, v in sick.items()]
    tokens = await _register(clients, resources.names.device_table, [d for d, _ in posts])
    env = {**resources.env, **vitals_run.FAST_WORKER_ENV, "VITALSTREAM_ALERT_PASS_SECONDS": "1"}
    gateway = gateway_role(resources.env, tmp_path)
    with _unresponsive_endpoint() as hanging:
        worker = worker_role("vitals", {**env, "AWS_ENDPOINT_URL_SNS": hanging}, tmp_path, name="vitals-hung")
        with running(gateway, worker):
            await vitals_run.post_all(gateway.health_url.removesuffix("/readyz"), tokens, posts)
            committed = await _until(url, "SELECT * FROM deterioration_alerts", lambda r: len(r) == 3, within=60)
            assert all(r["published_at"] is None for r in committed)
            worker.kill()  # right after the commit, the publish hanging
    restarted = worker_role("vitals", env, tmp_path, name="vitals-restarted")
    with running(restarted):
        await _until(url, "SELECT 1 FROM deterioration_alerts WHERE published_at IS NULL", lambda r: not r, 60)
        messages = await _receive_all(clients, resources.names.alert_queue)
    rows = await _fetch(url, "SELECT alert_id, patient_id, risk FROM deterioration_alerts")
    assert sorted((r["patient_id"], r["risk"]) for r in rows) == [(p, "high") for p in sorted(sick)]  # no duplicate
    assert {m["alert_id"] for m in messages} == {r["alert_id"] for r in rows}  # each seen at least once
