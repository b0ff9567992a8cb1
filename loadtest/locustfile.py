"""Locust load test of the gateway with the simulated fleet model.

    eval "$(vitalstream dev env)"
    locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 60s --host "$VITALSTREAM_GATEWAY_URL"

Each locust user is one device: it registers itself in the device registry (DynamoDB, from the
environment), then posts a snapshot of readings once per second. Bounded by ``-t``; loopback only.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
from datetime import UTC, datetime

import boto3
import orjson
from locust import FastHttpUser, constant_pacing, task

from common.devices import new_token
from loadtest.fleet import Device

_counter = itertools.count()
_lock = threading.Lock()


def _register(device: Device) -> str:
    """Register ``device`` directly in the registry table (same item shape as ``vitalstream devices add``)."""
    token, salt, digest = new_token(device.device_id)
    table = os.environ.get("VITALSTREAM_DEVICE_TABLE", "vitalstream-devices")
    client = boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION", "us-east-1"))
    client.put_item(
        TableName=table,
        Item={
            "device_id": {"S": device.device_id},
            "patient_id": {"S": device.patient_id},
            "token_salt": {"S": salt},
            "token_hash": {"S": digest},
        },
    )
    return token


class DeviceUser(FastHttpUser):
    wait_time = constant_pacing(1.0)

    def on_start(self) -> None:
        with _lock:
            index = next(_counter)
        self.device = Device(
            device_id=f"locust-{os.getpid()}-{index:05d}",
            patient_id=f"locust-pt-{index:05d}",
            rng=random.Random(index),
        )
        self.headers = {"Authorization": f"Bearer {_register(self.device)}", "Content-Type": "application/json"}

    @task
    def post_snapshot(self) -> None:
        body = orjson.dumps({"readings": self.device.snapshot(datetime.now(UTC))}).decode()
        with self.client.post("/v1/vitals", data=body, headers=self.headers, catch_response=True) as response:
            if response.status_code in (202, 429):
                response.success()
            else:
                response.failure(f"status {response.status_code}")
