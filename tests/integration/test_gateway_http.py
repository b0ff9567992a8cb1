"""The gateway over real HTTP against kinesalite and moto: every status and reject code, read-back; the suite
runs with the fast path on and off (``VITALSTREAM_GATEWAY_FASTPATH``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import orjson
import pytest

from schemas.wire import derive_message_id
from tests.conftest import Resources
from tests.helpers.gateway import Gateway, iso, read_stream, reading, running_gateway
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration

DEVICE = "dev-http-1"
OTHER = "dev-http-2"


@pytest.fixture(params=["on", "off"], ids=["fastpath-on", "fastpath-off"])
async def gateway(request: pytest.FixtureRequest, resources: Resources, clients: AwsClients) -> AsyncIterator[Gateway]:
    """The gateway with the C fast path on, and with it off (VITALSTREAM_GATEWAY_FASTPATH): same answers."""
    devices: dict[str, str | None] = {DEVICE: "pat-1", OTHER: None}
    async with running_gateway(clients.dynamodb, devices, gateway_fastpath=request.param) as running:
        yield running


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        yield client


async def post(http: httpx.AsyncClient, gateway: Gateway, body: object, device: str = DEVICE) -> httpx.Response:
    return await http.post("/v1/vitals", content=orjson.dumps(body), headers=gateway.headers(device))


async def test_accepted_readings_are_in_the_stream_normalised(
    gateway: Gateway, http: httpx.AsyncClient, clients: AwsClients, resources: Resources
) -> None:
    at = (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    plus_two = at.astimezone(timezone(timedelta(hours=2))).isoformat()
    body = {
        "readings": [
            reading(DEVICE, metric="body_temp", value=98.6, unit="[degF]", measured_at=plus_two),
            reading(DEVICE, metric="8480-6", value=16, unit="kPa", measured_at=iso(at), patient_id="pat-x"),
            reading(DEVICE, metric="glucose", value=5.5, unit="mmol/L", measured_at=iso(at), message_id="m-1"),
            reading(DEVICE, metric="heart_rate", value=72, measured_at=iso(at).replace("Z", ".123456Z")),
            reading(DEVICE, metric="nope", value=1),
        ]
    }
    response = await post(http, gateway, body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["accepted"] == 4
    assert answer["rejected"] == [{"index": 4, "code": "unknown_metric", "message": answer["rejected"][0]["message"]}]
    assert response.headers["x-request-id"] == answer["request_id"]

    envelopes = await read_stream(clients.kinesis, resources.names.stream)
    assert len(envelopes) == 1
    envelope = envelopes[0]
    assert envelope["request_id"] == answer["request_id"]
    assert envelope["device_id"] == DEVICE
    now_us = datetime.now(UTC).timestamp() * 1e6
    assert abs(envelope["received_at_us"] - now_us) < 60e6
    columns = envelope["readings"]
    at_us = int(at.timestamp() * 1_000_000)
    assert columns["metric"] == ["body_temp", "bp_systolic", "glucose", "heart_rate"]
    assert columns["loinc_code"] == ["8310-5", "8480-6", "2339-0", "8867-4"]
    assert columns["unit"] == ["Cel", "mm[Hg]", "mg/dL", "/min"]
    assert columns["value"] == pytest.approx([37.0, 120.00992, 99.088, 72.0])
    assert columns["measured_at_us"] == [at_us, at_us, at_us, at_us + 123456]
    assert columns["patient_id"] == ["pat-1", "pat-x", "pat-1", "pat-1"]
    assert columns["message_id"][2] == "m-1"
    assert columns["message_id"][0] == derive_message_id(DEVICE, "body_temp", at_us, columns["value"][0])
    assert columns["message_id"][3] == derive_message_id(DEVICE, "heart_rate", at_us + 123456, 72.0)


async def test_every_reject_code_and_422_when_none_accepted(gateway: Gateway, http: httpx.AsyncClient) -> None:
    future = iso(datetime.now(UTC) + timedelta(minutes=10))
    cases = {
        "missing_field": reading(DEVICE, value=...),
        "extra_field": reading(DEVICE, colour="red"),
        "invalid_type": reading(DEVICE, value="72"),
        "unknown_metric": reading(DEVICE, metric="weight"),
        "unknown_unit": reading(DEVICE, unit="kPa"),
        "invalid_value": reading(DEVICE, patient_id="has space"),
        "invalid_timestamp": reading(DEVICE, measured_at="2026-01-01T12:00:00"),
        "future_timestamp": reading(DEVICE, measured_at=future),
        "stale_timestamp": reading(DEVICE, measured_at="1970-01-01T00:00:00Z"),
    }
    response = await post(http, gateway, {"readings": list(cases.values())})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["accepted"] == 0
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == list(enumerate(cases))
    assert all(r["message"] for r in answer["rejected"])

    more = [reading(DEVICE, value=True), reading(DEVICE, metric="bp_systolic", value=1e308, unit="kPa"), 7]
    response = await post(http, gateway, {"readings": [*more, reading(DEVICE)]})
    assert response.status_code == 202
    assert [r["code"] for r in response.json()["rejected"]] == ["invalid_type", "invalid_value", "invalid_type"]

    metrics = (await http.get("/metrics")).text
    assert 'vitalstream_gateway_readings_rejected_total{code="future_timestamp"} 1.0' in metrics
    assert 'vitalstream_gateway_requests_total{status="422"} 1.0' in metrics
    assert "vitalstream_gateway_readings_accepted_total 1.0" in metrics


async def test_single_reading_body(gateway: Gateway, http: httpx.AsyncClient) -> None:
    response = await post(http, gateway, reading(DEVICE))
    assert response.status_code == 202
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'"text"', b'{"readings": []}', b'{"readings": {}}', b'{"readings": [], "x": 1}', b""],
)
async def test_400_for_a_body_that_is_not_a_json_object(gateway: Gateway, http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE))
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


async def test_401_without_or_with_a_wrong_token(gateway: Gateway, http: httpx.AsyncClient) -> None:
    body = orjson.dumps(reading(DEVICE))
    missing = await http.post("/v1/vitals", content=body, headers={"Content-Type": "application/json"})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    token = gateway.tokens[DEVICE]
    for bad in (token[:-2] + "xx", "vst1.ZGV2.secret", "garbage", f"Basic {token}"):
        header = bad if bad.startswith("Basic") else f"Bearer {bad}"
        response = await http.post(
            "/v1/vitals", content=body, headers={"Authorization": header, "Content-Type": "application/json"}
        )
        assert response.status_code == 401, bad
        assert "detail" in response.json()


async def test_403_when_a_reading_names_another_device_and_nothing_is_accepted(
    gateway: Gateway, http: httpx.AsyncClient, clients: AwsClients, resources: Resources
) -> None:
    response = await post(http, gateway, {"readings": [reading(DEVICE), reading(OTHER)]})
    assert response.status_code == 403
    assert await read_stream(clients.kinesis, resources.names.stream) == []


async def test_413_for_large_bodies_and_too_many_readings(gateway: Gateway, http: httpx.AsyncClient) -> None:
    too_many = await post(http, gateway, {"readings": [reading(DEVICE)] * 1001})
    assert too_many.status_code == 413
    big = b'{"readings": [' + b" " * (1024 * 1024) + b"]}"
    assert (await http.post("/v1/vitals", content=big, headers=gateway.headers(DEVICE))).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: enforced while reading
        for _ in range(20):
            yield b" " * 65536

    chunked = await http.post("/v1/vitals", content=chunks(), headers=gateway.headers(DEVICE))
    assert chunked.status_code == 413
    assert (await post(http, gateway, {"readings": [reading(DEVICE)] * 1000})).status_code == 202


async def test_415_for_a_non_json_content_type(gateway: Gateway, http: httpx.AsyncClient) -> None:
    body = orjson.dumps(reading(DEVICE))
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE, content_type))
        assert response.status_code == 415
    ok = await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE, "application/json; charset=utf-8"))
    assert ok.status_code == 202


async def test_429_when_the_device_exceeds_its_rate(resources: Resources, clients: AwsClients) -> None:
    async with (
        running_gateway(clients.dynamodb, {DEVICE: None, OTHER: None}, device_rate="1:3") as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        statuses = [(await post(http, gateway, reading(DEVICE))).status_code for _ in range(4)]
        assert statuses == [202, 202, 202, 429]
        limited = await post(http, gateway, reading(DEVICE))
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 2
        assert (await post(http, gateway, reading(OTHER), device=OTHER)).status_code == 202


async def test_health_readiness_metrics_and_docs(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200
    await post(http, gateway, reading(DEVICE))
    metrics = await http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        'vitalstream_gateway_requests_total{status="202"}',
        "vitalstream_gateway_put_latency_seconds_bucket",
        "vitalstream_gateway_put_retries_total",
        "vitalstream_gateway_put_throttles_total",
        "vitalstream_gateway_queue_depth 0.0",
    ):
        assert name in metrics.text
    schema = (await http.get("/openapi.json")).json()
    responses = schema["paths"]["/v1/vitals"]["post"]["responses"]
    assert sorted(responses) == ["202", "400", "401", "403", "408", "413", "415", "422", "429", "503"]
    assert "Reading" in schema["components"]["schemas"]
    assert (await http.get("/docs")).status_code == 200
    assert (await http.get("/v1/vitals")).status_code == 405


async def test_readyz_is_503_when_the_stream_is_missing(resources: Resources, clients: AwsClients) -> None:
    async with (
        running_gateway(clients.dynamodb, {}, stream="no-such-stream") as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        response = await http.get("/readyz")
        assert response.status_code == 503
        assert "detail" in response.json()
