"""Locust load test of the gateway with the simulated fleet, journaling every request for reconciliation.

Run it through ``make loadtest`` (``python -m loadtest.load``), which registers the fleet, writes
``fleet.json`` into the run directory and starts locust headless with several processes, e.g.:

    LOADTEST_RUN_DIR=loadtest/reports/load/RUN LOADTEST_SHAPE=steady LOADTEST_USERS=100 LOADTEST_DURATION=60 \\
      locust -f loadtest/locustfile.py --headless --processes 2 --master-bind-host 127.0.0.1 \\
      --stop-timeout 60 --host "$VITALSTREAM_GATEWAY_URL"

Each locust user drives one device of the fleet (a pool per process, so a device is never driven by two
users at once): a snapshot per second, each request retried with the same body until a definitive answer
(see :mod:`loadtest.driver`). A request is journaled as unanswered before its first attempt and again with
its answer, so a request cut short still counts as *uncertain* rather than vanishing from the truth. When a
user stops (end of the run, or a shape ramping down) it finishes its request and sends what its device
still holds (``--stop-timeout`` lets it).
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from locust import FastHttpUser, LoadTestShape, constant_pacing, events, task
from locust.env import Environment

from loadtest.driver import DEFINITIVE, retry_delay, sent_record
from loadtest.fleet import Device, Outgoing, campaign_mix, make_fleet
from loadtest.journal import Journal
from loadtest.shapes import users_at

GIVE_UP_SECONDS = 90.0


class _Pool:
    """The devices this process may drive, handed to users one at a time."""

    def __init__(self) -> None:
        self.free: list[Device] = []
        self.tokens: dict[str, str] = {}
        self.journal: Journal | None = None

    def load(self, environment: Environment) -> None:
        run_dir = Path(os.environ["LOADTEST_RUN_DIR"])
        fleet_doc = orjson.loads((run_dir / "fleet.json").read_bytes())
        runner: Any = environment.runner
        index = int(getattr(runner, "worker_index", 0) or 0)
        processes = max(1, int(os.environ.get("LOADTEST_PROCESSES", "1")))
        fleet = make_fleet(fleet_doc["devices"], fleet_doc["seed"], prefix=fleet_doc["prefix"], mix=campaign_mix())
        self.free = [d for i, d in enumerate(fleet) if i % processes == index % processes]
        self.free.reverse()
        self.tokens = fleet_doc["tokens"]
        self.journal = Journal(run_dir, f"locust-{index}-{os.getpid()}")


POOL = _Pool()


class FleetShape(LoadTestShape):
    """The shape named by ``LOADTEST_SHAPE`` (:mod:`loadtest.shapes`), bounded by ``LOADTEST_DURATION``."""

    def tick(self) -> tuple[int, float] | None:
        users = int(os.environ.get("LOADTEST_USERS", "50"))
        duration = float(os.environ.get("LOADTEST_DURATION", "60"))
        wanted = users_at(os.environ.get("LOADTEST_SHAPE", "steady"), float(self.get_run_time()), users, duration)  # type: ignore[no-untyped-call]
        return None if wanted is None else (wanted, max(1.0, users / 5.0))


def _on_test_start(environment: Environment, **_: Any) -> None:
    if POOL.journal is None and os.environ.get("LOADTEST_RUN_DIR"):
        POOL.load(environment)


events.test_start.add_listener(_on_test_start)  # type: ignore[no-untyped-call]


class DeviceUser(FastHttpUser):
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        if not POOL.free:
            raise RuntimeError("the process's device pool is empty: register more devices (fleet.json)")
        self.device = POOL.free.pop()
        self.headers = {
            "Authorization": f"Bearer {POOL.tokens[self.device.device_id]}",
            "Content-Type": "application/json",
        }
        self.pending: tuple[Outgoing, float] | None = None

    @task
    def post_snapshot(self) -> None:
        if (bad := self.device.malformed_body()) is not None:
            self._deliver(Outgoing([], [], body=bad))
        out = self.device.take(datetime.now(UTC))
        if out is None:
            return
        self._deliver(out)
        if self.device.rng.random() < self.device.mix.retry_duplicate:
            self._deliver(out)  # a retry after a lost response

    def on_stop(self) -> None:
        if getattr(self, "device", None) is None:
            return
        if self.pending is not None:  # cut short: finish it
            out, _ = self.pending
            self._deliver(out)
        rest = self.device.flush(datetime.now(UTC))
        if rest is not None:
            self._deliver(rest)
        POOL.free.append(self.device)
        self.device = None  # type: ignore[assignment]

    def _deliver(self, out: Outgoing) -> None:
        assert POOL.journal is not None
        body = out.body if out.body is not None else orjson.dumps({"readings": out.readings})
        started = time.time()
        give_up = time.monotonic() + GIVE_UP_SECONDS
        rng = random.Random(self.device.rng.random())
        self.pending = (out, started)
        POOL.journal.write(sent_record(self.device, out, None, None, started, 0))  # unanswered until answered
        attempts = 0
        status: int | None = None
        payload: Any = None
        while True:
            attempts += 1
            with self.client.post(
                "/v1/vitals", data=body.decode(), headers=self.headers, catch_response=True
            ) as response:
                status = response.status_code or None
                headers = {k.lower(): v for k, v in (response.headers or {}).items()}
                if status in DEFINITIVE:
                    expected = 400 if out.body is not None else None
                    if status in (202, 422) or status == expected:
                        response.success()
                    else:
                        response.failure(f"status {status}")
                    try:
                        payload = orjson.loads(response.content or b"null")
                    except orjson.JSONDecodeError:
                        payload = None
                else:
                    response.failure(f"status {status}" if status else "transport error")
            if status in DEFINITIVE:
                break
            if time.monotonic() >= give_up:
                status = None
                break
            time.sleep(retry_delay(status, headers, attempts, rng))
        POOL.journal.write(sent_record(self.device, out, status, payload, started, attempts))
        self.pending = None
