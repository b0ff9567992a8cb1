"""Faults no emulator produces, injected through botocore event hooks on the gateway's real Kinesis client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Resources
from tests.helpers.gateway import FakeHttpResponse, free_port, read_stream, reading, running_gateway
from vitalstream.devstack.clients import AwsClients
from vitalstream.devstack.processes import http_ok, wait_until

pytestmark = pytest.mark.integration

THROTTLED = "ProvisionedThroughputExceededException"


def _stash_records(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context["test_records"] = params["Records"]


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_partial_failures_are_retried_without_loss_or_duplicates(
    resources: Resources, clients: AwsClients
) -> None:
    """Odd entries of the first calls fail (not written); even ones are really written by another client."""
    devices = [f"dev-partial-{i}" for i in range(6)]
    stream = resources.names.stream
    calls: list[int] = []

    async def partial_failure(context: dict[str, Any], **_: Any) -> tuple[FakeHttpResponse, dict[str, Any]] | None:
        records = context["test_records"]
        calls.append(len(records))
        if len(calls) > 2:
            return None  # later calls go through untouched
        fails = [index % 2 == 1 or len(records) == 1 for index in range(len(records))]
        written = [record for record, fail in zip(records, fails, strict=True) if not fail]
        results = iter([])
        if written:
            results = iter((await clients.kinesis.put_records(StreamName=stream, Records=written))["Records"])
        entries = [
            {"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded"} if fail else next(results) for fail in fails
        ]
        return FakeHttpResponse(), {"FailedRecordCount": sum(fails), "Records": entries}

    async with running_gateway(clients.dynamodb, dict.fromkeys(devices)) as gateway:
        gateway.kinesis.meta.events.register("before-parameter-build.kinesis.PutRecords", _stash_records)
        gateway.kinesis.meta.events.register("before-call.kinesis.PutRecords", partial_failure)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:

            async def send(device: str, n: int) -> httpx.Response:
                body = {"readings": [reading(device, value=60 + n), reading(device, metric="spo2", value=97)]}
                return await http.post("/v1/vitals", content=orjson.dumps(body), headers=gateway.headers(device))

            responses = await asyncio.gather(*(send(device, n) for device in devices for n in range(4)))
            metrics = (await http.get("/metrics")).text
    assert [r.status_code for r in responses] == [202] * len(responses)
    assert len(calls) >= 3, calls  # retried
    assert max(calls) > 1, calls  # coalesced
    failed = sum(max(1, n // 2) for n in calls[:2])
    assert _metric(metrics, "vitalstream_gateway_put_retries_total") == failed
    assert _metric(metrics, "vitalstream_gateway_put_throttles_total") == failed
    envelopes = await read_stream(clients.kinesis, resources.names.stream)
    written = Counter(envelope["request_id"] for envelope in envelopes)
    accepted = {r.json()["request_id"] for r in responses}
    assert set(written) == accepted
    assert max(written.values()) == 1
    assert sum(len(e["readings"]["metric"]) for e in envelopes) == 2 * len(responses)


async def test_a_failed_call_is_retried_as_a_whole(resources: Resources, clients: AwsClients) -> None:
    failures = [0]

    def throttle_call(**_: Any) -> tuple[FakeHttpResponse, dict[str, Any]] | None:
        if failures[0] >= 2:
            return None
        failures[0] += 1
        response = FakeHttpResponse()
        response.status_code = 400
        return response, {"Error": {"Code": THROTTLED, "Message": "Rate exceeded"}, "ResponseMetadata": {}}

    async with running_gateway(clients.dynamodb, {"dev-call": None}) as gateway:
        gateway.kinesis.meta.events.register("before-call.kinesis.PutRecords", throttle_call)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            body = orjson.dumps(reading("dev-call"))
            response = await http.post("/v1/vitals", content=body, headers=gateway.headers("dev-call"))
    assert response.status_code == 202, response.text
    assert failures[0] == 2
    envelopes = await read_stream(clients.kinesis, resources.names.stream)
    assert [e["request_id"] for e in envelopes] == [response.json()["request_id"]]


async def test_permanent_throttle_is_503_and_nothing_is_written(resources: Resources, clients: AwsClients) -> None:
    def always_throttled(context: dict[str, Any], **_: Any) -> tuple[FakeHttpResponse, dict[str, Any]]:
        records = context["test_records"]
        entries = [{"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded"} for _ in records]
        return FakeHttpResponse(), {"FailedRecordCount": len(records), "Records": entries}

    async with running_gateway(clients.dynamodb, {"dev-throttled": None}, put_retry_budget_seconds=0.5) as gateway:
        events = gateway.kinesis.meta.events
        events.register("before-parameter-build.kinesis.PutRecords", _stash_records)
        events.register("before-call.kinesis.PutRecords", always_throttled, unique_id="throttle")
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            body = orjson.dumps({"readings": [reading("dev-throttled"), reading("dev-throttled", metric="spo2")]})
            headers = gateway.headers("dev-throttled")
            refused = await http.post("/v1/vitals", content=body, headers=headers)
            metrics = (await http.get("/metrics")).text
            assert await read_stream(clients.kinesis, resources.names.stream) == []
            events.unregister("before-call.kinesis.PutRecords", unique_id="throttle")
            recovered = await http.post("/v1/vitals", content=body, headers=headers)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert "detail" in refused.json()
    assert _metric(metrics, "vitalstream_gateway_put_throttles_total") >= 2
    assert 'vitalstream_gateway_requests_total{status="503"} 1.0' in metrics
    assert "vitalstream_gateway_readings_accepted_total 0.0" in metrics
    assert recovered.status_code == 202
    envelopes = await read_stream(clients.kinesis, resources.names.stream)
    assert [e["request_id"] for e in envelopes] == [recovered.json()["request_id"]]


async def test_shutdown_drains_a_pending_put(resources: Resources, clients: AwsClients) -> None:
    entered = asyncio.Event()

    async def slow_put(**_: Any) -> None:
        entered.set()
        await asyncio.sleep(1.0)

    async with httpx.AsyncClient(timeout=30) as http:
        async with running_gateway(clients.dynamodb, {"dev-drain": None}) as gateway:
            gateway.kinesis.meta.events.register("before-call.kinesis.PutRecords", slow_put)
            pending = asyncio.create_task(
                http.post(
                    f"{gateway.url}/v1/vitals",
                    content=orjson.dumps(reading("dev-drain")),
                    headers=gateway.headers("dev-drain"),
                )
            )
            await asyncio.wait_for(entered.wait(), 10)
        # the server has shut down here: it waited for the pending put
        response = await pending
    assert response.status_code == 202
    envelopes = await read_stream(clients.kinesis, resources.names.stream)
    assert [e["request_id"] for e in envelopes] == [response.json()["request_id"]]


async def test_202_only_after_the_stream_acknowledged_the_records(resources: Resources, clients: AwsClients) -> None:
    """A slow PutRecords (2 s) holds the answer: the 202 is sent only after the call returned."""
    acknowledged: list[float] = []

    async def slow_put(**_: Any) -> None:
        await asyncio.sleep(2.0)

    def put_returned(**_: Any) -> None:
        acknowledged.append(asyncio.get_running_loop().time())

    async with running_gateway(clients.dynamodb, {"dev-slow": None}) as gateway:
        gateway.kinesis.meta.events.register("before-call.kinesis.PutRecords", slow_put)
        gateway.kinesis.meta.events.register("after-call.kinesis.PutRecords", put_returned)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            response = await http.post(
                "/v1/vitals", content=orjson.dumps(reading("dev-slow")), headers=gateway.headers("dev-slow")
            )
            answered_with_put_done = bool(acknowledged)
    assert response.status_code == 202, response.text
    assert answered_with_put_done, "202 sent before PutRecords returned"
    envelopes = await read_stream(clients.kinesis, resources.names.stream)
    assert [e["request_id"] for e in envelopes] == [response.json()["request_id"]]


async def test_vitalstream_gateway_command_serves_and_stops_on_sigterm(
    resources: Resources, clients: AwsClients
) -> None:
    from common.devices import register_device

    token = await register_device(clients.dynamodb, resources.names.device_table, "dev-cli", None)
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, **resources.env, "VITALSTREAM_GATEWAY_URL": url}
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once, the gateway runs on its own
        [sys.executable, "-m", "vitalstream", "gateway"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        await asyncio.to_thread(wait_until, lambda: http_ok(f"{url}/readyz"), 30, "gateway", proc.pid)
        async with httpx.AsyncClient(base_url=url) as http:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            body = orjson.dumps(reading("dev-cli", value=73.123456, patient_id="pat-secret-name"))
            response = await http.post("/v1/vitals", content=body, headers=headers)
        assert response.status_code == 202
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith(b"{")]
    assert "gateway stopped" in [line["msg"] for line in lines]
    request_lines = [line for line in lines if line.get("msg") == "request"]
    assert request_lines == [
        {**request_lines[0], "request_id": response.json()["request_id"], "status": 202, "devices": 1, "accepted": 1}
    ]
    assert b"heart_rate" not in output
    for phi in (b"73.123456", b"pat-secret-name"):  # values and patient ids never reach the log
        assert phi not in output
