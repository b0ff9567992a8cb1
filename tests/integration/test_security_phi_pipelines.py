"""PHI audit across every pipeline at once: PHI-bearing input through the real gateway (accepted, rejected and
refused requests), the vitals worker, and the ehr and claims workers (CSV, FHIR NDJSON, HL7 ADT, DMS CDC, X12 837
and 835, good and bad rows), all in this process over moto S3/SQS, kinesalite and the private PostgreSQL. Then
every log line (every logger, JSON as ``configure_logging("DEBUG")`` writes it), every answer of the gateway,
every metric of the gateway's and the workers' ``/metrics``, ``batch_quarantine.detail``, every warehouse table
and every processed/ and quarantine/ Parquet object is scanned for the markers: zero hits.

Names, street lines, phones, SSNs, birth dates as sent and display texts may stand in ``raw/`` only. A reading's
value and client message id are stored as sent (CONTRACT §2, §7) but never logged, labelled or quoted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from common.metrics import new_registry, serve_metrics
from common.settings import WorkerSettings
from loadtest.files import Adjudication, Adt, Claim, cdc_file, hl7_file, x12_835, x12_837
from tests.conftest import WAREHOUSE_TABLES, Resources
from tests.helpers.batch import CLAIMS_HEADER, PATIENTS_HEADER, claim, csv_bytes, fetch, patient
from tests.helpers.bigfiles import Expected, fhir_lines
from tests.helpers.gateway import iso, reading, running_gateway
from tests.helpers.phi import (
    ADDRESS,
    IDENTITY_MARKERS,
    NAME,
    SSN,
    capture_logs,
    hits,
    lake_text,
    phi_readings,
    post_phi_requests,
)
from tests.helpers.phi import warehouse_text as dump_warehouse
from vitalstream.devstack.clients import AwsClients
from vitalstream.devstack.processes import free_port
from workers.pipelines.registry import PipelineContext, WorkerClients, build_pipeline
from workers.runtime.flush import FlushPolicy
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.runner import Runner

pytestmark = pytest.mark.integration

DEVICE, OTHER = "dev-phi-all", "dev-phi-other"
VALUE = 98.7654321  # plausible: fact_vitals
IMPLAUSIBLE = 398.7654321  # vitals_quarantine (implausible)
MESSAGE_ID = "msgid-Kq7ZrPhi"
IDENTITY = (*IDENTITY_MARKERS, "19840229")
READING = ("8.7654321", MESSAGE_ID)
"""Stored as sent in fact_vitals / vitals_quarantine; never in a log, a metric, an answer or a quarantine detail."""

FAST = {
    "VITALSTREAM_FLUSH_SECONDS": "1",
    "VITALSTREAM_SPIKE_HOLD_SECONDS": "2",
    "VITALSTREAM_LEASE_SECONDS": "3",
    "VITALSTREAM_FILE_VISIBILITY_SECONDS": "10",
}


def _files() -> dict[str, bytes]:
    """PHI-bearing batch files, each with good rows and rows or messages that are quarantined."""
    fhir = b"".join(fhir_lines(6, Expected())) + b"\n".join(
        [
            orjson.dumps({"resourceType": "Patient", "id": "FB1", "birthDate": "Zyxwvut",
                          "name": [{"family": "Zyxwvut", "text": NAME}], "telecom": [{"value": "555-0142"}],
                          "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": SSN}]}),
            orjson.dumps({"resourceType": "Privatesson", "id": "X1", "text": {"div": ADDRESS}}),
            b'{"resourceType": "Patient", "id": "FB2", "name": "Zyxwvut Qwertyuiop',  # cut: not valid JSON
        ]
    )  # fmt: skip
    street = f"742 Evergreen Terrace, SSN {SSN}, (555)555-0142"
    patients = csv_bytes(
        PATIENTS_HEADER,
        [patient("PP1", street_address=street), patient("PP2", birth_date="Zyxwvut"),
         ["PP3", "Zyxwvut", "Qwertyuiop", street]],  # wrong number of fields
    )  # fmt: skip
    claims = csv_bytes(
        CLAIMS_HEADER,
        [
            claim("CC1"),
            claim("CC2", status="Zyxwvut"),
            claim("CC3", provider_npi=SSN),
            claim("CC4", patient_id=NAME, billed_amount=SSN),
        ],
    )
    adts = [
        Adt("MSG1", "20260105101500", "A01", "HP1", visit="V1", admit="20260105101500", dx="I10"),
        Adt("MSG2", "20260105111500", "A01", "HP2"),  # no visit number: quarantined by its control id
    ]
    cdc = [
        {"patient_id": "CP1", "family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": "1959-12-31",
         "sex": "female", "postal_code": "02139", "street_address": "742 Evergreen Terrace, Springfieldia",
         "dms_commit_ts": "2026-01-05 10:00:00"},
    ]  # fmt: skip
    cdc_changes = [{"Op": "X", "dms_commit_ts": "2026-01-05 11:00:00"} | cdc[0]]
    return {
        "raw/ehr/patients/phi.csv": patients,
        "raw/ehr/fhir/phi.ndjson": fhir,
        "raw/ehr/hl7/phi.hl7": hl7_file(adts),
        "raw/ehr/cdc/dbo/patients/LOAD00000001.csv": cdc_file(cdc, full_load=True),
        "raw/ehr/cdc/dbo/patients/20260105-110000000.csv": cdc_file(cdc_changes),
        "raw/claims/phi.csv": claims,
        "raw/claims/x12/claims.x12": x12_837([Claim("XC1"), Claim("XC2", rendering_npi="12345")], control=11),
        "raw/claims/x12/remit.x12": x12_835([Adjudication("XC1", lines=((1, "150.00", "80.00", "100.00", None),))]),
    }


@asynccontextmanager
async def _workers(clients: AwsClients, stack: AsyncExitStack) -> AsyncIterator[dict[str, str]]:
    """The vitals, ehr and claims pipelines, each composed and run as ``vitalstream worker`` does, each with its
    own registry served on ``/metrics``; yields the metrics URLs."""
    settings = WorkerSettings()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    urls: dict[str, str] = {}
    worker_clients = WorkerClients(clients.kinesis, clients.s3, clients.sqs, clients.dynamodb)
    for name in ("vitals", "ehr", "claims"):
        metrics = WorkerMetrics(registry := new_registry(), name)
        ctx = PipelineContext(name, f"phi-{name}", settings, worker_clients, registry, metrics, stack, stop)
        source, handler = await build_pipeline(ctx)
        runner = Runner(source, handler, FlushPolicy(max_age=1), metrics, pipeline=name, poll_interval=0.3)
        port = free_port()
        server = await serve_metrics(registry, "127.0.0.1", port, healthy=runner.healthy)
        stack.push_async_callback(_close, server)
        urls[name] = f"http://127.0.0.1:{port}"
        tasks.append(asyncio.create_task(runner.run(stop)))
    try:
        yield urls
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


async def _until_settled(url: str, files: int, within: float = 60) -> None:
    """Every file committed and both accepted readings accounted for by the vitals worker."""
    query = (
        "SELECT pipeline, count(*) AS batches, sum(rows_loaded + rows_quarantined) AS rows FROM load_audit "
        "GROUP BY pipeline"
    )
    deadline = time.monotonic() + within
    audit: dict[str, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        audit = {r["pipeline"]: (r["batches"], r["rows"]) for r in await fetch(url, query)}
        batches = audit.get("ehr", (0, 0))[0] + audit.get("claims", (0, 0))[0]
        if batches >= files and audit.get("vitals", (0, 0))[1] >= 2:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not settled: {audit}")


async def test_phi_never_leaves_raw_in_any_pipeline(
    resources: Resources, clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    files = _files()
    readings = phi_readings(DEVICE, VALUE, MESSAGE_ID)
    readings.append(reading(DEVICE, value=IMPLAUSIBLE, measured_at=iso(datetime.now(UTC) - timedelta(minutes=2))))
    bucket, url = resources.names.bucket, resources.warehouse_url
    metrics: dict[str, str] = {}
    with capture_logs() as captured:
        async with (
            AsyncExitStack() as stack,
            _workers(clients, stack) as worker_urls,
            running_gateway(clients.dynamodb, {DEVICE: "pat-phi-1"}) as gateway,
            httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
        ):
            answers = await post_phi_requests(http, gateway, DEVICE, readings, OTHER)
            assert [a.status_code for a in answers] == [202, 400, 400, 401, 415, 403]
            assert answers[0].json()["accepted"] == 2
            await asyncio.gather(*(clients.s3.put_object(Bucket=bucket, Key=k, Body=b) for k, b in files.items()))
            await _until_settled(url, len(files))
            metrics["gateway"] = (await http.get("/metrics")).text
            for name, base in worker_urls.items():
                metrics[name] = (await http.get(f"{base}/metrics")).text
            gateway.app._vitals.flush_log()
        logs = captured.getvalue()

    # Everything ran: request lines, batch logs, metrics of each process, the stored values, quarantined rows.
    assert '"status":202' in logs
    assert logs.count('"msg":"batch file loaded"') == len(files)
    assert all("vitalstream_" in text for text in metrics.values()), metrics.keys()
    assert await fetch(url, "SELECT value, message_id FROM fact_vitals") == [{"value": VALUE, "message_id": MESSAGE_ID}]
    assert await fetch(url, "SELECT reason FROM vitals_quarantine") == [{"reason": "implausible"}]
    quarantined = await fetch(url, "SELECT source_key, reason, detail FROM batch_quarantine")
    assert {r["source_key"] for r in quarantined} == set(files) - {"raw/ehr/cdc/dbo/patients/LOAD00000001.csv",
                                                                    "raw/claims/x12/remit.x12"}  # fmt: skip

    found = hits("logs", logs, (*IDENTITY, *READING))
    for name, text in metrics.items():
        found += hits(f"/metrics of {name}", text, (*IDENTITY, *READING))
    for answer in answers[1:]:
        found += hits(f"answer {answer.status_code}", answer.text, (*IDENTITY, *READING))
    for rejection in answers[0].json()["rejected"]:
        if rejection["code"] != "extra_field":  # names the unknown key (CONTRACT §2), back to the sender only
            found += hits(f"rejection {rejection['code']}", rejection["message"], (*IDENTITY, *READING))
    for row in quarantined:
        found += hits(f"batch_quarantine.detail of {row['source_key']}", row["detail"] or "", (*IDENTITY, *READING))
    for table, text in (await dump_warehouse(url, WAREHOUSE_TABLES)).items():
        found += hits(f"warehouse {table}", text, IDENTITY)
    lake = await lake_text(clients.s3, bucket, ("processed/", "quarantine/"))
    assert any(key.startswith("processed/vitals/") for key in lake)
    assert any(key.startswith("quarantine/ehr/") for key in lake)
    for key, text in lake.items():
        found += hits(key, text, IDENTITY)
    assert found == []
