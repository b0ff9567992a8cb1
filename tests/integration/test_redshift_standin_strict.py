"""The Redshift production path through the strict Data API stand-in (issue 17, points 1-6 and concurrency).

Each test here failed on the code before the fix (checked by reverting it): the stand-in refuses what Redshift
refuses (statement count and size, VARCHAR bytes, the COPY role's S3 permissions, undocumented Parquet codecs)
and runs every request at REPEATABLE READ on its own connection with informational UNIQUE constraints.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from common.aws import ClientFactory
from common.errors import TerminalError, TransientError
from common.settings import WorkerSettings
from schemas.arrow import SERIES
from schemas.ddl import ddl_statements, table_columns
from tests.conftest import WAREHOUSE_TABLES, RedshiftStandIn, Resources
from tests.helpers.batch import PATIENTS_HEADER, csv_bytes, object_batch, patient
from tests.helpers.gateway import FakeHttpResponse
from tests.helpers.vitals import T0_US, R, envelope, fleet_envelopes, us
from vitalstream.devstack.redshift_data import to_postgres
from workers.pipelines.ehr import LAKE_TABLES, parse_ehr_file
from workers.pipelines.files import FileBatchHandler
from workers.pipelines.vitals import build_handler
from workers.runtime.types import BatchResult, SourceRecord, make_batch
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse import vitals_sql as sql
from workers.warehouse.open import open_loader
from workers.warehouse.redshift.client import RedshiftStatements
from workers.warehouse.redshift.vitals import RedshiftDataLoader

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/vitalstream-redshift-copy"
URL = f"redshift-data://vitalstream/dev?iam_role={ROLE}"
DAY_S = 86_400
LATE = (
    "INSERT INTO load_audit (batch_id, pipeline, rows_in, rows_loaded, rows_quarantined, rows_duplicate) "
    "VALUES ('late', 'vitals', 0, 0, 0, 0)"
)


@pytest.fixture
async def rs_client(redshift: RedshiftStandIn) -> AsyncIterator[Any]:
    async with ClientFactory("us-east-1").client("redshift-data") as client:
        yield client


def loader(client: Any, **kwargs: Any) -> RedshiftDataLoader:
    rs = RedshiftDataLoader.from_url(URL, client)
    for name, value in kwargs.items():
        setattr(rs.statements, name, value)
    return rs


async def handle(
    rs: RedshiftDataLoader, resources: Resources, s3: Any, payloads: Sequence[bytes], source: str = "shard-0"
) -> BatchResult:
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    records = [SourceRecord(p, "k", f"{i:020d}", us(20)) for i, p in enumerate(payloads)]
    return await build_handler(settings, s3, rs).handle(make_batch("vitals", source, records))


async def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r.values()) for r in await conn.fetch(query)]
    finally:
        await conn.close()


def largest_call(redshift: RedshiftStandIn) -> tuple[int, int]:
    """(statements, bytes of the largest statement) of the largest call the stand-in received."""
    calls = [st.sqls for st in redshift.server.statements.values()]
    return max(len(c) for c in calls), max(len(s.encode()) for c in calls for s in c)


# -- the stand-in itself ---------------------------------------------------------------------------------------
async def test_the_redshift_ddl_runs_with_informational_keys_and_byte_lengths(redshift: RedshiftStandIn) -> None:
    columns = table_columns("redshift")
    assert set(columns) == set(WAREHOUSE_TABLES)
    for table, expected in columns.items():
        got = await fetch(
            redshift.url,
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            f"AND table_name = '{table}' ORDER BY ordinal_position",
        )
        assert [c for (c,) in got] == [name for name, _ in expected], table
    # UNIQUE / PRIMARY KEY are informational in Redshift: not enforced here either.
    keys = await fetch(
        redshift.url,
        "SELECT conname FROM pg_constraint WHERE contype IN ('u', 'p') AND connamespace = 'public'::regnamespace",
    )
    assert keys == []
    checks = await fetch(redshift.url, "SELECT conname FROM pg_constraint WHERE conname = 'message_id_max_512_bytes'")
    assert len(checks) == 3  # fact_vitals, vitals_quarantine, vitals_pending
    assert all(to_postgres(s) != s for s in ddl_statements("redshift"))
    assert to_postgres("SELECT 1") == "SELECT 1"


async def test_statement_count_and_size_limits(redshift: RedshiftStandIn, rs_client: Any) -> None:
    target = {"WorkgroupName": "vitalstream", "Database": "dev"}
    with pytest.raises(ClientError, match="at most 40"):
        await rs_client.batch_execute_statement(Sqls=["SELECT 1"] * 41, **target)
    with pytest.raises(ClientError, match="larger than 100kB"):
        await rs_client.execute_statement(Sql="SELECT '" + "x" * 100_000 + "'", **target)
    # The client refuses before sending anything.
    statements = loader(rs_client).statements
    before = redshift.server.submitted
    with pytest.raises(TerminalError, match="at most 40"):
        await statements.run(["SELECT 1"] * 41)
    with pytest.raises(TerminalError, match="less than 100000 bytes"):
        await statements.run(["SELECT '" + "é" * 50_000 + "'"])
    assert redshift.server.submitted == before


async def test_varchar_lengths_are_bytes(redshift: RedshiftStandIn, rs_client: Any) -> None:
    statements = loader(rs_client).statements
    create = "CREATE TEMP TABLE t (m VARCHAR(128))"
    await statements.run([create, "INSERT INTO t VALUES ('" + "e" * 128 + "')"])
    with pytest.raises(TerminalError, match="m_max_128_bytes"):
        await statements.run([create, "INSERT INTO t VALUES ('" + "é" * 128 + "')"])


async def test_copy_refuses_keys_outside_the_copy_role_and_undocumented_codecs(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, rs_client: Any
) -> None:
    bucket = resources.names.bucket
    table = pa.table({"device_id": ["d"], "metric": ["heart_rate"], "measured_at": pa.array([T0_US], SERIES[2].type)})
    statements = loader(rs_client).statements
    create = sql.create_staging_sql("vs_clean_keys", "redshift")
    copy = "COPY vs_clean_keys (device_id, metric, measured_at) FROM 's3://{}/{}' IAM_ROLE '{}' FORMAT AS PARQUET"
    for codec, key, error in (
        ("snappy", "raw/iot/vitals/x.parquet", "Access Denied"),  # raw/ is not the COPY role's
        ("zstd", "staging/vitals/pending/z.parquet", "compression codec ZSTD"),
        ("snappy", "staging/vitals/pending/s.parquet", None),
    ):
        sink = io.BytesIO()
        pq.write_table(table, sink, compression=codec)
        await clients.s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())
        run = statements.run([create, copy.format(bucket, key, ROLE), "SELECT COUNT(*) FROM vs_clean_keys"])
        if error is None:
            await run
        else:
            with pytest.raises(TerminalError, match=error):
                await run


# -- points 1-6 ------------------------------------------------------------------------------------------------
async def test_1_a_batch_with_quarantined_readings_loads(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, rs_client: Any
) -> None:
    """The COPY role reads the quarantine objects (it could not: S3 403 -> the whole batch to batch_quarantine)."""
    payload = envelope("d1", [R("d1", "heart_rate", 0, 70), R("d1", "heart_rate", 1, 400), R("d1", "spo2", 0, 140)])
    result = await handle(loader(rs_client), resources, clients.s3, [payload])
    assert (result.rows_loaded, result.rows_quarantined) == (1, 2)
    assert await fetch(redshift.url, "SELECT reason FROM vitals_quarantine ORDER BY 1") == [("implausible",)] * 2
    assert await fetch(redshift.url, "SELECT * FROM batch_quarantine") == []


async def test_3_a_backfill_over_many_days_is_one_call_of_few_statements(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, rs_client: Any
) -> None:
    """45 days x implausible: 45 quarantine objects, one COPY through their manifest (was 45 COPYs: > 40)."""
    rows = [R("d1", "heart_rate", day * DAY_S, 500) for day in range(45)]
    rows += [R("d1", "spo2", day * DAY_S, 97) for day in range(45)]
    result = await handle(loader(rs_client), resources, clients.s3, [envelope("d1", rows)])
    assert (result.rows_loaded, result.rows_quarantined) == (45, 45)
    statements, largest = largest_call(redshift)
    assert statements <= 20  # the load (16) and the NEWS2 recompute of CONTRACT §9 (4) in one transaction
    assert largest < 100_000


async def test_4_context_of_20000_series_stays_within_the_limits(redshift: RedshiftStandIn, rs_client: Any) -> None:
    """20,000 series of 64-byte device ids: calls of <= 40 statements, each < 100 kB (was 47 statements)."""
    n = 20_000
    devices = [f"{i:064d}" for i in range(n)]
    series = pa.table(
        {
            "device_id": devices,
            "metric": ["respiratory_rate"] * n,
            "since": pa.array([T0_US + 123_456 + i for i in range(n)], SERIES[2].type),
        },
        schema=SERIES,
    )
    context = await loader(rs_client).context(series, "shard-0", 8)
    assert context.num_rows == 0
    statements, largest = largest_call(redshift)
    assert statements <= 40
    assert largest < 100_000


async def test_5_resubmission_deadline_and_describe_errors(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, rs_client: Any
) -> None:
    rs = loader(rs_client)
    # A describe error is retried in place: the statement is not abandoned and submitted again.
    failures = [0]

    def flaky(**_: Any) -> tuple[FakeHttpResponse, dict[str, Any]] | None:
        if failures[0] >= 2:
            return None
        failures[0] += 1
        response = FakeHttpResponse()
        response.status_code = 400
        return response, {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}, "ResponseMetadata": {}}

    rs_client.meta.events.register("before-call.redshift-data.DescribeStatement", flaky, unique_id="flaky")
    try:
        before = redshift.server.submitted
        await handle(rs, resources, clients.s3, [envelope("d1", [R("d1", "heart_rate", 0, 70)])])
    finally:
        rs_client.meta.events.unregister("before-call.redshift-data.DescribeStatement", unique_id="flaky")
    assert failures[0] == 2
    loads = [st for st in redshift.server.statements.values() if st.sqls[0] == sql.LOAD_LOCK]
    assert len(loads) == 1
    assert redshift.server.submitted - before == 5  # audited (handler), context, audited, load, audited
    # A resubmission of the same load (same ClientToken) returns the same statement: nothing runs twice.
    again = await rs.statements.run(loads[0].sqls, key=_batch_id(loads[0].sqls))
    assert again == loads[0].id
    assert len([st for st in redshift.server.statements.values() if st.sqls[0] == sql.LOAD_LOCK]) == 1

    # At the deadline the statement is cancelled, and only then reported: nothing of it commits.
    blocker = await asyncpg.connect(redshift.url)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK load_lock")
            slow = RedshiftStatements(rs_client, rs.target, timeout=0.5)
            insert = (
                "INSERT INTO load_audit (batch_id, pipeline, rows_in, rows_loaded, rows_quarantined, rows_duplicate)"
            )
            with pytest.raises(TransientError, match="cancelled"):
                await slow.run([sql.LOAD_LOCK, f"{insert} VALUES ('late', 'vitals', 0, 0, 0, 0)"], key="late")
    finally:
        await blocker.close()
    (late,) = [
        st for st in redshift.server.statements.values() if st.sqls[-1].endswith("('late', 'vitals', 0, 0, 0, 0)")
    ]
    assert late.status == "ABORTED"
    assert await fetch(redshift.url, "SELECT * FROM load_audit WHERE batch_id = 'late'") == []


def _batch_id(sqls: Sequence[str]) -> str:
    audit = next(s for s in sqls if s.startswith("INSERT INTO load_audit"))
    return audit.split("SELECT '", 1)[1].split("'", 1)[0]


async def test_6_a_non_ascii_message_id_of_128_characters_loads(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, rs_client: Any
) -> None:
    """128 characters, 256 UTF-8 bytes: within the contract; Redshift's VARCHAR(128) (bytes) refused it."""
    message_id = "é" * 128
    payload = envelope("d1", [R("d1", "heart_rate", 0, 70, message_id=message_id), R("d1", "spo2", 0, 400)])
    result = await handle(loader(rs_client), resources, clients.s3, [payload])
    assert (result.rows_loaded, result.rows_quarantined) == (1, 1)
    assert await fetch(redshift.url, "SELECT message_id FROM fact_vitals") == [(message_id,)]


# -- concurrency -----------------------------------------------------------------------------------------------
async def test_concurrent_loads_neither_double_nor_lose_rows(
    resources: Resources, clients: Any, redshift: RedshiftStandIn, rs_client: Any
) -> None:
    """Two workers load the same batch at once (lease takeover), then two shards load overlapping readings at once."""
    fleet = fleet_envelopes(4, 12, spike_every=5, duplicate_every=3)
    async with ClientFactory("us-east-1").client("redshift-data") as other:
        first, second = await asyncio.gather(
            handle(loader(rs_client), resources, clients.s3, fleet),
            handle(loader(other), resources, clients.s3, fleet),
        )
        assert first == second
        keys = "SELECT device_id, metric, measured_at FROM fact_vitals"
        fact = await fetch(redshift.url, keys)
        assert len(fact) == len(set(fact)) == first.rows_loaded
        quarantined = await fetch(redshift.url, "SELECT device_id, metric, measured_at FROM vitals_quarantine")
        assert len(quarantined) == len(set(quarantined)) == first.rows_quarantined
        assert len(await fetch(redshift.url, "SELECT * FROM load_audit")) == 1

        # Two shards at once; the same device's readings reached both (e.g. a resharding), plus their own.
        shared = [R("dx", "heart_rate", 1000 + i, 70 + i % 3) for i in range(30)]
        own = {s: [R(f"d-{s}", "spo2", 1000 + i, 97) for i in range(30)] for s in ("shard-1", "shard-2")}
        results = await asyncio.gather(
            *(
                handle(loader(client), resources, clients.s3, [envelope("dx", shared), envelope(f"d-{s}", own[s])], s)
                for client, s in ((rs_client, "shard-1"), (other, "shard-2"))
            )
        )
    fact = await fetch(redshift.url, keys + " WHERE device_id IN ('dx', 'd-shard-1', 'd-shard-2')")
    assert len(fact) == len(set(fact)) == 90  # every reading once: none doubled, none lost
    assert sum(r.rows_loaded for r in results) == 90
    assert sum(r.rows_duplicate for r in results) == 30


async def test_concurrent_file_loads_neither_double_nor_lose_rows(
    resources: Resources, clients: Any, redshift: RedshiftStandIn
) -> None:
    """The ehr loads take the same load lock: two workers on one file and another file, all at once."""
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    lake = LakeWriter(clients.s3, resources.names.bucket)
    loaders = [await open_loader(URL, settings=settings, s3=clients.s3) for _ in range(3)]
    try:
        same = object_batch("ehr", "raw/ehr/patients/a.csv", csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2")]))
        other = object_batch(
            "ehr", "raw/ehr/patients/b.csv", csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2", sex="x")]), "b"
        )
        handlers = [FileBatchHandler("ehr", parse_ehr_file, lake, loader, LAKE_TABLES) for loader in loaders]
        results = await asyncio.gather(handlers[0].handle(same), handlers[1].handle(same), handlers[2].handle(other))
    finally:
        for loader in loaders:
            await loader.close()
    assert results[0] == results[1]
    assert len(await fetch(redshift.url, "SELECT * FROM load_audit")) == 2
    current = await fetch(redshift.url, "SELECT patient_id FROM dim_patient WHERE is_current ORDER BY 1")
    assert current == [("P1",), ("P2",)]
