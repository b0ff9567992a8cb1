"""NEWS2 in the vitals pipeline, through the handler into the real PostgreSQL and the Redshift Data API path:
scores equal the reference on every boundary, quarantined readings never count, late readings rescore the
hour, several devices per patient, escalations raise one alert each, replays raise nothing."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest

from common.aws import ClientFactory
from common.settings import WorkerSettings
from schemas.arrow import NEWS2_PARAMETERS
from tests.conftest import Resources
from tests.helpers.news2 import BOUNDARY_VALUES, reference_scores
from tests.helpers.vitals import R, envelope, us
from vitalstream.devstack.redshift_data import start_redshift_data
from workers.pipelines.vitals import VitalsHandler, build_handler
from workers.runtime.types import SourceRecord, make_batch
from workers.stages.score_news2 import CHART
from workers.warehouse.news2_sql import alert_id
from workers.warehouse.postgres.vitals import PostgresLoader
from workers.warehouse.redshift.vitals import RedshiftDataLoader
from workers.warehouse.vitals_types import WarehouseLoader

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/vitalstream-copy"
METRIC = {p.name: p.metric for p in CHART}
NORMAL = {"rr": 16.0, "spo2": 98.0, "sbp": 120.0, "pulse": 70.0, "temp": 37.0}
HOUR = 3600


@pytest.fixture(params=["postgres", "redshift"])
async def loader(
    request: pytest.FixtureRequest, resources: Resources, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WarehouseLoader]:
    conn = await asyncpg.connect(resources.warehouse_url)
    await conn.execute("TRUNCATE vitals_pending, news2_hourly, deterioration_alerts")
    await conn.close()
    async with AsyncExitStack() as stack:
        if request.param == "postgres":
            pg = await PostgresLoader.connect(resources.warehouse_url)
            stack.push_async_callback(pg.close)
            yield pg
        else:
            stand_in, endpoint = await start_redshift_data(resources.warehouse_url)
            stack.push_async_callback(stand_in.close)
            monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", endpoint)
            client = await stack.enter_async_context(ClientFactory("us-east-1").client("redshift-data"))
            yield RedshiftDataLoader.from_url(f"redshift-data://vitalstream/dev?iam_role={ROLE}", client)


class Feed:
    """Batches into one handler, as one shard (``source``) would deliver them."""

    _positions = itertools.count()

    def __init__(self, handler: VitalsHandler, source: str = "shard-0") -> None:
        self.handler = handler
        self.source = source

    async def send(self, *payloads: bytes, arrived_s: float = 0) -> None:
        records = [SourceRecord(p, "k", f"{next(self._positions):020d}", us(arrived_s)) for p in payloads]
        await self.handler.handle(make_batch("vitals", self.source, records))


def handler_for(loader: WarehouseLoader, resources: Resources, s3: Any) -> VitalsHandler:
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=resources.warehouse_url)
    return build_handler(settings, s3, loader)


def hour_rows(patient: str, device: str, values: dict[str, float], at_s: float = 60) -> list[R]:
    return [R(device, METRIC[p], at_s, v, patient_id=patient) for p, v in values.items()]


async def rows(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


async def news2(url: str) -> dict[tuple[str, float], dict[str, Any]]:
    got = await rows(url, "SELECT * FROM news2_hourly")
    return {(r["patient_id"], r["hour_start"].timestamp() - us(0) / 1e6): r for r in got}


def boundary_patients() -> list[tuple[str, dict[str, float]]]:
    out = []
    for parameter, values in BOUNDARY_VALUES.items():
        for i, value in enumerate(values):
            out.append((f"b-{parameter}-{i}", {**NORMAL, parameter: value}))
    # Combinations across the risk bands (total 5-6, >= 7, a single 3).
    out.append(("b-medium", {"rr": 21, "spo2": 94, "sbp": 105, "pulse": 91, "temp": 38.05}))
    out.append(("b-high", {"rr": 25, "spo2": 91, "sbp": 100, "pulse": 131, "temp": 39.1}))
    out.append(("b-three", {**NORMAL, "spo2": 91}))
    return out


async def test_boundary_patients_get_the_reference_scores(
    loader: WarehouseLoader, resources: Resources, clients: Any
) -> None:
    feed = Feed(handler_for(loader, resources, clients.s3))
    patients = boundary_patients()
    await feed.send(*(envelope(f"dev-{p}", hour_rows(p, f"dev-{p}", v)) for p, v in patients))
    table = await news2(resources.warehouse_url)
    assert len(table) == len(patients)
    for patient, values in patients:
        row = table[(patient, 0)]
        expected = reference_scores(dict(values))
        assert {k: row[k] for k in expected} == expected, (patient, values)
        assert [row[p] for p in NEWS2_PARAMETERS] == [values[p] for p in NEWS2_PARAMETERS]
    alerts = await rows(resources.warehouse_url, "SELECT alert_id, patient_id, risk, total FROM deterioration_alerts")
    expected_alerts = {
        (p, str(reference_scores(dict(v))["risk"]))
        for p, v in patients
        if reference_scores(dict(v))["risk"] in ("medium", "high")
    }
    assert {(a["patient_id"], a["risk"]) for a in alerts} == expected_alerts
    assert ("b-high", "high") in expected_alerts
    assert ("b-medium", "medium") in expected_alerts
    hour0 = table[("b-high", 0)]["hour_start"]
    assert all(a["alert_id"] == alert_id(a["patient_id"], hour0, a["risk"]) for a in alerts)


async def test_quarantine_late_readings_devices_and_escalations(
    loader: WarehouseLoader, resources: Resources, clients: Any
) -> None:
    url = resources.warehouse_url
    feed = Feed(handler_for(loader, resources, clients.s3))
    # Hour 0: pulse from a bedside monitor, the newest reading a spike that the next one (in hour 1) decides.
    pulse = [R("mon", "heart_rate", t, v, patient_id="p1") for t, v in ((3500, 70), (3550, 71), (3580, 70))]
    await feed.send(envelope("mon", [*pulse, R("mon", "heart_rate", 3599, 165, patient_id="p1")]))
    await feed.send(envelope("mon", [R("mon", "heart_rate", HOUR + 10, 71, patient_id="p1")]))
    assert (await rows(url, "SELECT reason FROM vitals_quarantine"))[0]["reason"] == "spike"
    # An implausible SpO2 never counts either.
    await feed.send(envelope("mon", [R("mon", "spo2", 3000, 140, patient_id="p1")]))
    table = await news2(url)
    assert (table[("p1", 0)]["pulse"], table[("p1", 0)]["score_pulse"]) == (70, 0)
    assert table[("p1", 0)]["spo2"] is None
    assert table[("p1", HOUR)]["pulse"] == 71

    # A second device of the patient (another shard): its later reading is the hour's latest.
    watch = Feed(feed.handler, "shard-1")
    await watch.send(envelope("watch", [R("watch", "resp_rate", 3000, 22, patient_id="p1")]))
    await watch.send(envelope("watch", [R("watch", "heart_rate", 3590, 112, patient_id="p1")]))
    table = await news2(url)
    assert (table[("p1", 0)]["pulse"], table[("p1", 0)]["score_pulse"], table[("p1", 0)]["total"]) == (112, 2, 4)
    assert await rows(url, "SELECT * FROM deterioration_alerts") == []

    # A late reading older than the hour's latest changes nothing; a late one that is the latest rescores.
    await feed.send(envelope("mon", [R("mon", "bp_systolic", 100, 95, patient_id="p1")]))  # sbp 2: total 6
    await feed.send(envelope("mon", [R("mon", "heart_rate", 3400, 72, patient_id="p1")]))  # older: ignored
    table = await news2(url)
    assert (table[("p1", 0)]["pulse"], table[("p1", 0)]["total"], table[("p1", 0)]["risk"]) == (112, 6, "medium")
    await watch.send(envelope("watch", [R("watch", "heart_rate", 3595, 135, patient_id="p1")]))  # latest: pulse 3
    table = await news2(url)
    assert (table[("p1", 0)]["total"], table[("p1", 0)]["risk"]) == (7, "high")
    alerts = await rows(url, "SELECT alert_id, risk, total, score_pulse FROM deterioration_alerts ORDER BY raised_at")
    assert [(a["risk"], a["total"], a["score_pulse"]) for a in alerts] == [("medium", 6, 2), ("high", 7, 3)]

    # Back down to medium and up again: no new alert for the hour.
    await watch.send(envelope("watch", [R("watch", "heart_rate", 3598, 115, patient_id="p1")]))
    assert (await news2(url))[("p1", 0)]["risk"] == "medium"
    await watch.send(envelope("watch", [R("watch", "heart_rate", 3599.5, 136, patient_id="p1")]))
    assert len(await rows(url, "SELECT alert_id FROM deterioration_alerts")) == 2
    assert (await news2(url))[("p1", 0)]["risk"] == "high"

    # A held newest reading (far from its predecessor) released by the next one in hour 1 as physiology: it is
    # the latest of hour 0 once accepted, and only then.
    rising = [R("mon2", "heart_rate", t, v, patient_id="p3") for t, v in ((3500, 70), (3550, 71), (3580, 70))]
    await feed.send(envelope("mon2", [*rising, R("mon2", "heart_rate", 3599, 112, patient_id="p3")]))
    assert (await rows(url, "SELECT value FROM vitals_pending"))[0]["value"] == 112
    assert (await news2(url))[("p3", 0)]["pulse"] == 70
    await feed.send(envelope("mon2", [R("mon2", "heart_rate", HOUR + 5, 113, patient_id="p3")]))
    assert await rows(url, "SELECT value FROM vitals_pending") == []
    assert ((await news2(url))[("p3", 0)]["pulse"], (await news2(url))[("p3", 0)]["score_pulse"]) == (112, 2)

    # Straight to high, then down to medium: the hour's medium is not a first escalation (one alert).
    await feed.send(envelope("d2", hour_rows("p2", "d2", {"rr": 25, "spo2": 91, "pulse": 111}, at_s=100)))
    await feed.send(envelope("d2", hour_rows("p2", "d2", {"spo2": 94}, at_s=200)))
    assert ((await news2(url))[("p2", 0)]["total"], (await news2(url))[("p2", 0)]["risk"]) == (6, "medium")
    p2 = await rows(url, "SELECT risk FROM deterioration_alerts WHERE patient_id = 'p2'")
    assert [a["risk"] for a in p2] == ["high"]


async def test_replayed_batch_raises_nothing_new(loader: WarehouseLoader, resources: Resources, clients: Any) -> None:
    handler = handler_for(loader, resources, clients.s3)
    payloads = [envelope("d", hour_rows("p9", "d", {"rr": 25, "spo2": 91, "sbp": 120, "pulse": 70, "temp": 37}))]
    records = [SourceRecord(p, "k", f"{i:020d}", us(0)) for i, p in enumerate(payloads)]
    await handler.handle(make_batch("vitals", "shard-9", records))
    before = await rows(resources.warehouse_url, "SELECT * FROM deterioration_alerts")
    await handler.handle(make_batch("vitals", "shard-9", records, replay=True))
    await handler_for(loader, resources, clients.s3).handle(make_batch("vitals", "shard-9", records, replay=True))
    assert await rows(resources.warehouse_url, "SELECT * FROM deterioration_alerts") == before
    assert [(a["risk"], a["total"]) for a in before] == [("medium", 6)]


async def test_outbox_reads_and_marks_alerts(loader: WarehouseLoader, resources: Resources, clients: Any) -> None:
    from workers.pipelines.vitals import open_outbox

    handler = handler_for(loader, resources, clients.s3)
    await Feed(handler).send(envelope("d", hour_rows("p7", "d", {"rr": 25, "spo2": 91, "pulse": 131})))  # 9: high
    outbox = open_outbox(loader)
    far = us(0) + 10 * 365 * 24 * 3600 * 1_000_000
    pending = await outbox.unpublished(far)
    got = [(r["patient_id"], r["risk"], r["total"], r["score_pulse"], r["score_temp"]) for r in pending.to_pylist()]
    assert got == [("p7", "high", 9, 3, None)]
    assert (await outbox.unpublished(us(-3600))).num_rows == 0  # raised after that moment
    assert await outbox.oldest_unpublished() is not None
    await outbox.mark_published(pending.column("alert_id").to_pylist())
    assert (await outbox.unpublished(far)).num_rows == 0
    assert await outbox.oldest_unpublished() is None
    stored = await rows(resources.warehouse_url, "SELECT published_at FROM deterioration_alerts")
    assert [r["published_at"] is not None for r in stored] == [True]
