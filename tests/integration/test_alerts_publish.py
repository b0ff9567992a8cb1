"""The alert outbox: published to SNS (moto) after the commit, read back from the subscribed SQS queue;
publish failures stay in the outbox, are counted, and the periodic pass publishes them; tail reads without
consuming."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry

from common.settings import WorkerSettings
from tests.conftest import Resources
from tests.helpers.vitals import R, envelope, us
from vitalstream.alerts import drain
from vitalstream.devstack.clients import AwsClients
from workers.pipelines.vitals import VitalsHandler, build_handler
from workers.pipelines.vitals_alerts import AlertMetrics, AlertPublisher
from workers.runtime.types import SourceRecord, make_batch
from workers.sinks.alerts_sns import AlertsSns
from workers.warehouse.news2_sql import alert_id
from workers.warehouse.postgres.news2 import PostgresAlertOutbox
from workers.warehouse.postgres.vitals import PostgresLoader

pytestmark = pytest.mark.integration

HIGH = {"resp_rate": 26, "spo2": 90, "bp_systolic": 118, "heart_rate": 120, "body_temp": 38.2}  # 3+3+0+2+1 = 9
_positions = itertools.count()


@pytest.fixture
async def loader(resources: Resources) -> AsyncIterator[PostgresLoader]:
    pg = await PostgresLoader.connect(resources.warehouse_url)
    try:
        yield pg
    finally:
        await pg.close()


def setup(resources: Resources, clients: AwsClients, loader: PostgresLoader) -> tuple[VitalsHandler, AlertPublisher]:
    metrics = AlertMetrics(CollectorRegistry())
    sink = AlertsSns(clients.sns, resources.env["VITALSTREAM_ALERT_TOPIC"])
    publisher = AlertPublisher(PostgresAlertOutbox(loader.pool), sink, metrics, grace_s=5)
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=resources.warehouse_url)
    return build_handler(settings, clients.s3, loader, publisher), publisher


async def send(handler: VitalsHandler, patient: str, values: dict[str, float], at_s: float = 30) -> None:
    rows = [R(f"dev-{patient}", m, at_s, v, patient_id=patient) for m, v in values.items()]
    record = SourceRecord(envelope(f"dev-{patient}", rows), "k", f"{next(_positions):020d}", us(0))
    await handler.handle(make_batch("vitals", "shard-0", [record]))


async def queue_url(clients: AwsClients, resources: Resources) -> str:
    return str((await clients.sqs.get_queue_url(QueueName=resources.names.alert_queue))["QueueUrl"])


async def outbox(url: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM deterioration_alerts ORDER BY raised_at")]
    finally:
        await conn.close()


def value(publisher: AlertPublisher, name: str, **labels: str) -> float:
    got = publisher.metrics.registry.get_sample_value(name, {"pipeline": "vitals", **labels})
    return float(got or 0.0)


async def test_alert_is_published_after_the_commit(
    resources: Resources, clients: AwsClients, loader: PostgresLoader
) -> None:
    handler, publisher = setup(resources, clients, loader)
    await send(handler, "p-high", HIGH)
    await send(handler, "p-low", {"resp_rate": 16, "spo2": 97, "heart_rate": 72})
    await send(handler, "p-lowmed", {"resp_rate": 16, "spo2": 91})  # a single 3: low-medium, no alert
    messages = await drain(clients.sqs, await queue_url(clients, resources), wait_seconds=2)
    assert len(messages) == 1
    hour = datetime.fromtimestamp(us(0) / 1e6, UTC)
    expected_id = alert_id("p-high", hour, "high")
    message = messages[0]
    assert message.pop("raised_at").endswith("Z")
    assert message == {
        "alert_id": expected_id,
        "patient_id": "p-high",
        "hour_start": "2026-01-01T00:00:00Z",
        "risk": "high",
        "total": 9,
        "scores": {"rr": 3, "spo2": 3, "sbp": 0, "pulse": 2, "temp": 1},
    }
    rows = await outbox(resources.warehouse_url)
    assert [(r["alert_id"], r["published_at"] is not None) for r in rows] == [(expected_id, True)]
    assert value(publisher, "vitalstream_worker_alerts_raised_total", risk="high") == 1
    assert value(publisher, "vitalstream_worker_alerts_published_total") == 1
    assert value(publisher, "vitalstream_worker_news2_scored_total") == 3
    # Tail does not consume: the next reader sees the same alert.
    again = await drain(clients.sqs, await queue_url(clients, resources))
    assert [m["alert_id"] for m in again] == [expected_id]


async def test_failed_publish_stays_in_the_outbox_until_a_pass(
    resources: Resources, clients: AwsClients, loader: PostgresLoader
) -> None:
    handler, publisher = setup(resources, clients, loader)
    calls = [0]

    def sns_down(**_: Any) -> None:
        calls[0] += 1
        raise ConnectionError("injected: SNS unreachable")

    clients.sns.meta.events.register("before-call.sns.PublishBatch", sns_down)
    try:
        await send(handler, "p-high", HIGH)
        await send(handler, "p-med", {"resp_rate": 22, "spo2": 94, "heart_rate": 95, "bp_systolic": 105})  # 5
        rows = await outbox(resources.warehouse_url)
        assert [(r["patient_id"], r["risk"], r["published_at"]) for r in rows] == [
            ("p-high", "high", None),
            ("p-med", "medium", None),
        ]
        assert value(publisher, "vitalstream_worker_alert_publish_failures_total") == 2
        assert not await publisher.pass_once(datetime.now(UTC).timestamp() + 10)  # still down
        assert value(publisher, "vitalstream_worker_alert_outbox_age_seconds") >= 10
    finally:
        clients.sns.meta.events.unregister("before-call.sns.PublishBatch", sns_down)
    assert calls[0] >= 3
    # Inside the grace period the pass leaves them to the publisher that raised them.
    assert await publisher.pass_once()
    assert (await drain(clients.sqs, await queue_url(clients, resources))) == []
    assert await publisher.pass_once(datetime.now(UTC).timestamp() + 10)
    messages = await drain(clients.sqs, await queue_url(clients, resources), wait_seconds=2)
    assert sorted(m["patient_id"] for m in messages) == ["p-high", "p-med"]
    assert all(r["published_at"] is not None for r in await outbox(resources.warehouse_url))
    assert value(publisher, "vitalstream_worker_alert_outbox_age_seconds") == 0
    assert value(publisher, "vitalstream_worker_alerts_published_total") == 2


def test_message_is_json_with_rfc3339_times() -> None:
    from workers.sinks.alerts_sns import alert_message

    row = {
        "alert_id": "a", "patient_id": "p", "hour_start": datetime(2026, 1, 1, 3, tzinfo=UTC), "risk": "medium",
        "total": 5, "score_rr": 2, "score_spo2": None, "score_sbp": 1, "score_pulse": 2, "score_temp": 0,
        "raised_at": datetime(2026, 1, 1, 3, 4, 5, 123000, tzinfo=UTC),
    }  # fmt: skip
    assert orjson.loads(alert_message(row)) == {
        "alert_id": "a", "patient_id": "p", "hour_start": "2026-01-01T03:00:00Z", "risk": "medium", "total": 5,
        "scores": {"rr": 2, "spo2": None, "sbp": 1, "pulse": 2, "temp": 0}, "raised_at": "2026-01-01T03:04:05.123000Z",
    }  # fmt: skip
