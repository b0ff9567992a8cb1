"""PHI audit of the gateway: PHI-bearing requests (valid, rejected, refused, malformed) leave no trace of the PHI in
any log line, metric label or refusal detail; only ids, counts and codes. (Every pipeline at once, the warehouse
and the lake included: ``test_security_phi_pipelines.py``.)"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Resources
from tests.helpers.gateway import running_gateway
from tests.helpers.phi import NAME, SSN, capture_logs, phi_readings, post_phi_requests
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration

DEVICE = "dev-phi-1"
MARKERS = ("Privatesson", "Secretive", "078-05-1120", "98.7654321", "19840229")


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the process, as the JSON formatter writes it."""
    with capture_logs() as stream:
        yield stream


async def test_phi_in_requests_never_reaches_logs_metrics_or_refusals(
    resources: Resources, clients: AwsClients, captured: io.StringIO
) -> None:
    phi = phi_readings(DEVICE, 98.7654321, f"{NAME} {SSN}")  # the id is the client's own: stored, never logged
    async with (
        running_gateway(clients.dynamodb, {DEVICE: "pat-1"}) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        answers = await post_phi_requests(http, gateway, DEVICE, phi, "dev-phi-2")
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
