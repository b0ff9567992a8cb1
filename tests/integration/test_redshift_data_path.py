"""The Redshift Data API path, end to end through the strict stand-in, gives the same rows as the PostgreSQL path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from common.aws import ClientFactory
from common.settings import WorkerSettings
from tests.conftest import RedshiftStandIn, Resources
from tests.helpers.vitals import R, envelope, fleet_envelopes, series, us
from tests.integration.test_vitals_postgres_loader import clean_rows, pending_rows, quarantine_rows, tables
from workers.pipelines.vitals import build_handler
from workers.runtime.types import SourceRecord, make_batch
from workers.warehouse.postgres.vitals import PostgresLoader
from workers.warehouse.redshift.vitals import RedshiftDataLoader, parse_warehouse_url
from workers.warehouse.vitals_types import LoadOutcome, LoadTables, WarehouseLoader

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/vitalstream-copy"
FACT = (
    "SELECT device_id, patient_id, metric, loinc_code, value, unit, measured_at, received_at, message_id, batch_id "
    "FROM fact_vitals ORDER BY 1, 3, 7"
)
QUAR = "SELECT device_id, metric, value, measured_at, batch_id, reason, detail FROM vitals_quarantine ORDER BY 1, 2, 4"
AUDIT = "SELECT batch_id, rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit ORDER BY 1"
PEND = "SELECT device_id, metric, measured_at, batch_id FROM vitals_pending ORDER BY 1, 2, 3"


def batches() -> list[list[bytes]]:
    fleet = fleet_envelopes(4, 12, spike_every=5, duplicate_every=3)
    return [
        fleet[: len(fleet) // 2],
        [*fleet[len(fleet) // 2 :], envelope("x1", series("x1", "heart_rate", [70, 71, 70, 150]))],
        [envelope("x1", series("x1", "heart_rate", [71, 70], start_s=4)), envelope("x1", [R("x1", "spo2", 1, 140)])],
        [envelope("x1", [R("x1", "heart_rate", 3, 72), R("x1", "spo2", 1, 97)])],  # late duplicates
    ]


async def snapshot(url: str) -> dict[str, list[Any]]:
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r.values()) for r in await conn.fetch(q)] for name, q in
                (("fact", FACT), ("quarantine", QUAR), ("audit", AUDIT), ("pending", PEND))}  # fmt: skip
    finally:
        await conn.close()


async def reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE fact_vitals, vitals_quarantine, load_audit, vitals_pending, batch_quarantine")
    finally:
        await conn.close()


async def run_all(loader: WarehouseLoader, resources: Resources, s3: Any, payloads: Sequence[Sequence[bytes]]) -> None:
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=resources.warehouse_url)
    handler = build_handler(settings, s3, loader)
    position = 0
    for n, batch_payloads in enumerate(payloads):
        recs = []
        for p in batch_payloads:
            recs.append(SourceRecord(p, "k", f"{position:020d}", us(20 + n)))
            position += 1
        await handler.handle(make_batch("vitals", "shard-0", recs))


@pytest.fixture
async def redshift_client(redshift: RedshiftStandIn) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        yield await stack.enter_async_context(ClientFactory("us-east-1").client("redshift-data"))


async def test_redshift_path_gives_the_same_rows(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, redshift_client: Any
) -> None:
    payloads = batches()
    await reset(resources.warehouse_url)
    pg = await PostgresLoader.connect(resources.warehouse_url)
    try:
        await run_all(pg, resources, clients.s3, payloads)
    finally:
        await pg.close()
    expected = await snapshot(resources.warehouse_url)
    assert expected["fact"]
    assert expected["quarantine"]
    assert {r[5] for r in expected["quarantine"]} == {"spike", "implausible"}

    rs = RedshiftDataLoader.from_url(f"redshift-data://vitalstream/dev?iam_role={ROLE}", redshift_client)
    await run_all(rs, resources, clients.s3, payloads)
    got = await snapshot(redshift.url)
    assert got == expected
    # Replaying every batch through the Redshift path changes nothing.
    await run_all(rs, resources, clients.s3, payloads)
    assert await snapshot(redshift.url) == expected
    # Both loaders see the same overdue holds.
    far_future_us = 4_000_000_000_000_000
    pg = await PostgresLoader.connect(resources.warehouse_url)
    try:
        assert await rs.stale_pending_sources(far_future_us) == await pg.stale_pending_sources(far_future_us)
    finally:
        await pg.close()


class Recording:
    """A loader that records every ``load`` call it forwards (the batch id, pipeline and tables)."""

    def __init__(self, loader: WarehouseLoader) -> None:
        self.loader = loader
        self.loads: list[tuple[str, str, LoadTables, LoadOutcome]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    async def load(self, batch_id: str, pipeline: str, tables: LoadTables) -> LoadOutcome:
        outcome = await self.loader.load(batch_id, pipeline, tables)
        self.loads.append((batch_id, pipeline, tables, outcome))
        return outcome


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
async def test_loading_an_audited_batch_again_changes_nothing(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, redshift_client: Any, dialect: str
) -> None:
    """The load statements' own ``load_audit`` guard: every batch loaded a second time straight through the
    loader (not through the handler, whose ``audited()`` pre-check would skip it), after later batches
    released its held rows - nothing raises, no table changes, the outcome says already loaded."""
    url = redshift.url if dialect == "redshift" else resources.warehouse_url  # the database behind the loader
    await reset(url)
    if dialect == "redshift":
        inner: WarehouseLoader = RedshiftDataLoader.from_url(
            f"redshift-data://vitalstream/dev?iam_role={ROLE}", redshift_client
        )
    else:
        inner = await PostgresLoader.connect(resources.warehouse_url)
    try:
        loader = Recording(inner)
        await run_all(loader, resources, clients.s3, batches())  # type: ignore[arg-type]
        before = await snapshot(url)
        assert before["fact"]
        assert before["quarantine"]
        assert len(before["audit"]) == len(loader.loads) == 4
        for batch_id, pipeline, tables, first in loader.loads:
            again = await inner.load(batch_id, pipeline, tables)
            assert again.already_loaded, batch_id
            assert (again.rows_in, again.rows_loaded, again.rows_quarantined, again.rows_duplicate) == (
                first.rows_in, first.rows_loaded, first.rows_quarantined, first.rows_duplicate
            )  # fmt: skip
            assert await snapshot(url) == before, batch_id
    finally:
        await inner.close()


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
async def test_context_is_the_newest_rows_of_each_series(
    resources: Resources, redshift: RedshiftStandIn, redshift_client: Any, dialect: str
) -> None:
    """Series longer than ``per_series``, with a spike near the end: the context holds exactly the newest
    ``per_series`` accepted and quarantined rows of each series (absolute contents, per dialect)."""
    url = redshift.url if dialect == "redshift" else resources.warehouse_url  # the database behind the loader
    await reset(url)
    k = 4
    d1 = series("d1", "heart_rate", [70 + i for i in range(12)])  # seconds 0..11
    d2 = series("d2", "spo2", [90 + i for i in range(7)])  # seconds 0..6
    spikes = [R("d1", "heart_rate", s + 0.5, 150 + s) for s in (0, 1, 2, 3, 4, 10)]  # the spike at 10.5 is new
    held = pending_rows([R("d1", "heart_rate", 11.5, 160)], "b1", source="shard-9")
    pg = await PostgresLoader.connect(url)  # seeds the rows (the Redshift tables run on PostgreSQL here)
    try:
        await pg.load("b1", "vitals", tables(clean_rows(d1 + d2, "b1"), quarantine_rows(spikes, "b1", "spike"), held))
        loader: WarehouseLoader = pg
        if dialect == "redshift":
            loader = RedshiftDataLoader.from_url(f"redshift-data://vitalstream/dev?iam_role={ROLE}", redshift_client)
        since = pa.array([us(-3600)] * 2, pa.timestamp("us", tz="UTC"))
        wanted = pa.table({"device_id": ["d1", "d2"], "metric": ["heart_rate", "spo2"], "since": since})
        context = await loader.context(wanted, "shard-9", k)
    finally:
        await pg.close()
    got = sorted(
        zip(*(context.column(c).to_pylist() for c in ("state", "device_id", "measured_at", "value")), strict=True)
    )
    expected = sorted(
        [("accepted", r.device_id, r.at_s, r.value) for r in d1[-k:] + d2[-k:]]
        + [("quarantined", r.device_id, r.at_s, r.value) for r in spikes[-k:]]
        + [("pending", "d1", 11.5, 160.0)]
    )
    assert [(state, device, (at.timestamp() * 1e6 - us(0)) / 1e6, value) for state, device, at, value in got] == (
        expected
    )


async def test_failed_statement_is_classified(resources: Resources, redshift_client: Any) -> None:
    from common.errors import TerminalError

    rs = RedshiftDataLoader.from_url(f"redshift-data://vitalstream/dev?iam_role={ROLE}", redshift_client)
    with pytest.raises(TerminalError, match="failed"):
        await rs._run(["SELECT * FROM no_such_table"])


def test_warehouse_url_forms() -> None:
    wg = parse_warehouse_url("redshift-data://analytics/dev?iam_role=arn:r&secret_arn=arn:s")
    assert (wg.workgroup, wg.cluster, wg.database, wg.iam_role, wg.secret_arn) == (
        "analytics",
        None,
        "dev",
        "arn:r",
        "arn:s",
    )
    cl = parse_warehouse_url("redshift-data://prod-cluster/dev?db_user=loader", iam_role="arn:x")
    assert (cl.cluster, cl.workgroup, cl.db_user, cl.iam_role) == ("prod-cluster", None, "loader", "arn:x")
    assert cl.params() == {"Database": "dev", "ClusterIdentifier": "prod-cluster", "DbUser": "loader"}
    with pytest.raises(ValueError, match="expected"):
        parse_warehouse_url("postgresql://x/y")
