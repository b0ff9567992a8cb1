"""schemathesis against ``/openapi.json`` of the running gateway: no server error, no undocumented status."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.conftest import Resources
from tests.helpers.gateway import free_port
from vitalstream.devstack.clients import AwsClients
from vitalstream.devstack.processes import http_ok, stop_pid, wait_until

pytestmark = pytest.mark.integration

DEVICE = "dev-schemathesis"
EXAMPLES = {"POST /v1/vitals": 150}  # per generation mode; GETs without parameters exhaust quickly
DEFAULT_EXAMPLES = 20
# Every check runs, with the statuses CONTRACT §2 gives: a schema-valid body may still be refused per reading
# by rules JSON Schema cannot state (catalogue metric, unit of that metric, at most 5 minutes in the future) →
# 422; a body over the documented limits (more than 1,000 readings) → 413.
NEGATIVE = ["400", "401", "403", "405", "413", "415", "422", "429", "503"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "422", "429", "503"]},
            "negative_data_rejection": {"expected-statuses": NEGATIVE},
        }
    }
)


@pytest.fixture
async def gateway_process(resources: Resources, clients: AwsClients) -> Iterator[tuple[str, str]]:
    from common.devices import register_device

    token = await register_device(clients.dynamodb, resources.names.device_table, DEVICE, "pat-s")
    url = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        **resources.env,
        "VITALSTREAM_GATEWAY_URL": url,
        "VITALSTREAM_DEVICE_RATE": "100000",
        "VITALSTREAM_AUTH_FAILURE_RATE": "100000",
    }  # schemathesis tries many bad tokens
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once, the gateway runs on its own
        [sys.executable, "-m", "vitalstream", "gateway"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: http_ok(f"{url}/readyz"), 30, "gateway", proc.pid)
        yield url, token
    finally:
        stop_pid(proc.pid)


def _aim_at_the_device(body: object, *, recent: bool = True) -> None:
    """Make a schema-valid body name the token's device (and often a catalogue metric and, if ``recent``, a
    recent time), so it gets past 403 and is often accepted; without ``recent`` the generated times (almost
    always stale or in the future) are kept, so whole bodies get refused too (422)."""
    readings = body.get("readings") if isinstance(body, dict) and "readings" in body else [body]
    for index, reading in enumerate(readings if isinstance(readings, list) else []):
        if isinstance(reading, dict):
            reading["device_id"] = DEVICE
            if index % 2 == 0:
                reading["metric"] = "heart_rate"
                reading.pop("unit", None)
                if recent and isinstance(reading.get("measured_at"), str):  # within the maximum reading age
                    reading["measured_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()


def test_openapi_conformance(gateway_process: tuple[str, str]) -> None:
    url, token = gateway_process
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=CONFIG)
    statuses: Counter[tuple[str, str, int]] = Counter()
    cases = 0

    def conformance(operation: Any, mode: GenerationMode) -> Any:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES.get(operation.label, DEFAULT_EXAMPLES),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            if case.headers and "Authorization" in case.headers:
                case.headers["Authorization"] = f"Bearer {token}"
            if mode is GenerationMode.POSITIVE:
                _aim_at_the_device(case.body, recent=cases % 3 != 0)
            response = case.call(base_url=url)
            statuses[(operation.label, mode.value, response.status_code)] += 1
            case.validate_response(response)

        return check

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                conformance(operation, mode)()
            except Unsatisfiable:  # nothing to negate in a GET without parameters
                assert mode is GenerationMode.NEGATIVE
    print(sorted(statuses.items()))
    assert cases >= 200, cases
    assert not any(status >= 500 for _, _, status in statuses), statuses
    posted = {status for label, _, status in statuses if label == "POST /v1/vitals"}
    assert {202, 400, 401, 422} <= posted, statuses  # authenticated, valid and invalid bodies were exercised
