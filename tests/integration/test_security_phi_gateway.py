"""PHI audit of the gateway: PHI-bearing requests (valid, rejected, refused, malformed) leave no trace of the PHI in
any log line, metric label or refusal detail; only ids, counts and codes. (The batch pipelines' half of the audit
is not here: see SECURITY.md, known limits.)"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest

from common.logging import JsonFormatter
from tests.conftest import Resources
from tests.helpers.gateway import reading, running_gateway
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration

DEVICE = "dev-phi-1"
NAME = "Jonathan Q. Privatesson"
ADDRESS = "1600 Secretive Avenue"
SSN = "078-05-1120"
MARKERS = ("Privatesson", "Secretive", "078-05-1120", "98.7654321", "19840229")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the process, as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


async def test_phi_in_requests_never_reaches_logs_metrics_or_refusals(
    resources: Resources, clients: AwsClients, captured: io.StringIO
) -> None:
    phi_readings = [
        reading(DEVICE, value=98.7654321, message_id=f"{NAME} {SSN}"),  # accepted: the id is the client's own
        reading(DEVICE, metric=NAME),  # unknown_metric
        reading(DEVICE, unit=ADDRESS),  # unknown_unit
        reading(DEVICE, patient_id=f"{NAME}"),  # invalid_value
        reading(DEVICE, measured_at=f"19840229 {NAME}"),  # invalid_timestamp
        reading(DEVICE, value=f"{SSN}"),  # invalid_type
        {**reading(DEVICE), "name": NAME},  # extra_field
        reading(f"{NAME}"),  # a malformed device id
    ]
    async with (
        running_gateway(clients.dynamodb, {DEVICE: "pat-1"}) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        headers = gateway.headers(DEVICE)
        answers = [
            await http.post("/v1/vitals", content=orjson.dumps({"readings": phi_readings}), headers=headers),
            await http.post("/v1/vitals", content=f'{{"name": "{NAME}", '.encode(), headers=headers),  # 400
            await http.post("/v1/vitals", content=orjson.dumps([NAME]), headers=headers),  # 400
            await http.post(
                "/v1/vitals",
                content=orjson.dumps(reading(DEVICE)),
                headers={"Authorization": f"Bearer {NAME}", "Content-Type": "application/json"},
            ),  # 401
            await http.post("/v1/vitals", content=NAME.encode(), headers=gateway.headers(DEVICE, "text/plain")),  # 415
            await http.post("/v1/vitals", content=orjson.dumps(reading("dev-phi-2", message_id=SSN)), headers=headers),
        ]
        assert [a.status_code for a in answers] == [202, 400, 400, 401, 415, 403]
        metrics = (await http.get("/metrics")).text
        gateway.app._vitals.flush_log()
    logs = captured.getvalue()
    assert '"status":202' in logs  # the request lines were captured
    for marker in MARKERS:
        assert marker not in logs, marker
        assert marker not in metrics, marker
        for answer in answers[1:]:  # refusals: {"detail": ...} names no value
            assert marker not in answer.text, (marker, answer.text)
    rejected = answers[0].json()["rejected"]
    assert {r["code"] for r in rejected} >= {"unknown_metric", "unknown_unit", "invalid_value", "invalid_timestamp"}
    for rejection in rejected:
        if rejection["code"] != "extra_field":  # names the unknown key, as CONTRACT §2's message does
            assert not any(marker in rejection["message"] for marker in MARKERS), rejection
