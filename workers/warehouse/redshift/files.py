"""Redshift loader of batch files, through the Redshift Data API (a :class:`~workers.warehouse.file_types.BatchLoader`).

Contract: per batch (a :class:`RedshiftLoadSession`), the loader puts one Parquet part per chunk and staged
table, and at commit one COPY manifest per staged warehouse table listing its parts, under the deterministic
prefix :func:`staging_prefix` (``staging/<pipeline>/<batch_id>/``; SSE-KMS when a key is configured; a replay
overwrites the same objects), then runs ONE ``BatchExecuteStatement`` built by
:func:`workers.warehouse.redshift.file_sql.load_statements` (one transaction: staging COPY, SCD2 / MERGE,
``batch_quarantine`` replace, ``load_audit``, guarded so that an audited batch is a no-op) and returns the
audited counts it answers. Staging objects are left in place (a concurrent load of the same batch may still be
reading them): expire ``staging/`` with an S3 lifecycle rule. Errors are ``common.errors`` classes:
:class:`TerminalError` for a bad plan or a failed statement, :class:`TransientError` for conflicts,
throttling and connection trouble. Logs and errors never carry row values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import pyarrow as pa

from common.aws import ClientFactory
from common.errors import TerminalError
from common.s3 import put_object
from common.settings import WorkerSettings
from schemas.arrow import BATCH_QUARANTINE, CLAIMS, ENCOUNTERS, PATIENTS
from schemas.feeds import ADT_EVENTS, ENCOUNTER_CHANGES, PATIENT_CHANGES, REMITTANCES
from workers.runtime.types import BatchResult
from workers.sinks.files_s3 import parquet_bytes
from workers.sinks.manifest_s3 import ManifestEntry, build_manifest
from workers.warehouse.file_tables import SPECS
from workers.warehouse.file_types import LoadPlan, check_chunk, load_plan
from workers.warehouse.redshift import file_sql as sql_redshift
from workers.warehouse.redshift.client import RedshiftStatements, RedshiftTarget, parse_warehouse_url
from workers.warehouse.vitals_sql import audited_sql

__all__ = ["RedshiftBatchLoader", "RedshiftLoadSession", "staged_tables", "staging_prefix"]

_SCHEMAS = {"patients": PATIENTS, "encounters": ENCOUNTERS, "claims": CLAIMS, "remittances": REMITTANCES,
            "patient_changes": PATIENT_CHANGES, "encounter_changes": ENCOUNTER_CHANGES,
            "adt_events": ADT_EVENTS}  # fmt: skip
_AUDIT = pa.schema([(n, pa.int64()) for n in ("rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate")])


def staging_prefix(pipeline: str, batch_id: str) -> str:
    """``staging/<pipeline>/<batch_id>/`` (batch ids are hex digests; anything else is refused)."""
    if not pipeline.isalnum() or not batch_id or not batch_id.replace("-", "").replace("_", "").isalnum():
        raise ValueError("pipeline and batch_id must be plain identifiers")
    return f"staging/{pipeline}/{batch_id}/"


def staged_tables(plan: LoadPlan) -> dict[str, pa.Table]:
    """Pure: staging key (lake table, or ``batch_quarantine``) -> the rows to COPY, in staging column order.

    Table rows of every file are concatenated in file order, cast to their ``schemas.arrow`` schema, with
    ``file_index`` (int32) and ``row_index`` (int64, position in the staged table) appended. Tables without
    rows are left out.
    """
    out: dict[str, pa.Table] = {}
    for lake_table, schema in _SCHEMAS.items():
        parts = []
        for index, file in enumerate(plan.files):
            rows = file.tables.get(lake_table)
            if rows is None or rows.num_rows == 0:
                continue
            rows = rows.select(list(SPECS[lake_table].column_names)).cast(schema)
            parts.append(rows.append_column("file_index", pa.repeat(pa.scalar(index, pa.int32()), rows.num_rows)))
        if parts:
            table = pa.concat_tables(parts)
            out[lake_table] = table.append_column("row_index", pa.array(range(table.num_rows), pa.int64()))
    quarantine = [f.quarantine.select(list(BATCH_QUARANTINE.names)).cast(BATCH_QUARANTINE) for f in plan.files]
    quarantine = [q for q in quarantine if q.num_rows]
    if quarantine:
        out[sql_redshift.QUARANTINE] = pa.concat_tables(quarantine)
    return out


class RedshiftBatchLoader:
    """Loads :class:`LoadPlan` s into Redshift; S3 for staging, the Data API for SQL.

    ``stack`` (optional) owns clients this loader opened itself; :meth:`close` closes them.
    """

    def __init__(
        self,
        statements: RedshiftStatements,
        s3: Any,
        bucket: str,
        *,
        kms_key_id: str | None = None,
        stack: AsyncExitStack | None = None,
    ) -> None:
        if not statements.target.iam_role:
            raise TerminalError(
                "the Redshift batch loader needs an IAM role for COPY (iam_role= or VITALSTREAM_REDSHIFT_IAM_ROLE)"
            )
        self.statements = statements
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self._stack = stack

    @property
    def target(self) -> RedshiftTarget:
        return self.statements.target

    @classmethod
    async def open(
        cls, url: str, settings: WorkerSettings, *, s3: Any = None, redshift: Any = None
    ) -> RedshiftBatchLoader:
        """A loader for ``url``; opens (and will close) the S3 / redshift-data clients not given."""
        try:
            target = parse_warehouse_url(url, settings.redshift_iam_role)
        except ValueError as exc:
            raise TerminalError(str(exc)) from exc
        stack = AsyncExitStack()
        try:
            factory = ClientFactory(settings.aws_region)
            if s3 is None:
                s3 = await stack.enter_async_context(factory.client("s3"))
            if redshift is None:
                redshift = await stack.enter_async_context(factory.client("redshift-data"))
            return cls(RedshiftStatements(redshift, target), s3, settings.bucket,
                       kms_key_id=settings.kms_key_id, stack=stack)  # fmt: skip
        except BaseException:
            await stack.aclose()
            raise

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def audited(self, batch_id: str) -> BatchResult | None:
        table = await self.statements.query([audited_sql(batch_id)], _AUDIT)
        return None if table.num_rows == 0 else BatchResult(**table.to_pylist()[0])

    async def load(self, plan: LoadPlan) -> BatchResult:
        return await load_plan(self, plan)

    @asynccontextmanager
    async def session(self, batch_id: str, pipeline: str) -> AsyncIterator[RedshiftLoadSession]:
        """Chunks staged to S3 as they come; one ``BatchExecuteStatement`` at :meth:`RedshiftLoadSession.commit`."""
        try:
            prefix = staging_prefix(pipeline, batch_id)
        except ValueError as exc:
            raise TerminalError(f"batch {batch_id} cannot be loaded into Redshift: {exc}") from exc
        session = RedshiftLoadSession(self, batch_id, pipeline, prefix)
        session.audited = await self.audited(batch_id)
        yield session

    async def _run(self, batch_id: str, statements: list[str]) -> BatchResult:
        table = await self.statements.query(statements, _AUDIT, key=batch_id)
        if table.num_rows == 0:
            raise TerminalError(f"batch {batch_id} has no audit row after its load")
        return BatchResult(**table.to_pylist()[0])

    async def _put(self, key: str, data: bytes, content_type: str) -> None:
        await put_object(self.s3, self.bucket, key, data, content_type=content_type, kms_key_id=self.kms_key_id)

    async def _stage(self, prefix: str, name: str, rows: pa.Table) -> str:
        """Put ``rows`` as Parquet and a manifest listing it; returns the manifest's ``s3://`` URL."""
        data = parquet_bytes(rows)
        key = f"{prefix}{name}.parquet"
        await put_object(self.s3, self.bucket, key, data, content_type="application/vnd.apache.parquet",
                         kms_key_id=self.kms_key_id)  # fmt: skip
        manifest = build_manifest([ManifestEntry(f"s3://{self.bucket}/{key}", len(data))])
        manifest_key = f"{prefix}{name}.manifest"
        await put_object(self.s3, self.bucket, manifest_key, manifest, content_type="application/json",
                         kms_key_id=self.kms_key_id)  # fmt: skip
        return f"s3://{self.bucket}/{manifest_key}"


class RedshiftLoadSession:
    """A :class:`~workers.warehouse.file_types.LoadSession`: every chunk's rows put to S3 as Parquet parts
    (``staging/<pipeline>/<batch_id>/<table>/part-<file>-<chunk>.parquet``, deterministic: a replay
    overwrites them), then at :meth:`commit` one manifest per table and ONE ``BatchExecuteStatement``
    (:func:`~workers.warehouse.redshift.file_sql.load_statements`). Nothing is visible before it."""

    def __init__(self, loader: RedshiftBatchLoader, batch_id: str, pipeline: str, prefix: str) -> None:
        self.loader = loader
        self.batch_id = batch_id
        self.pipeline = pipeline
        self.prefix = prefix
        self.audited: BatchResult | None = None
        self._files: list[sql_redshift.StagedFile] = []
        self._file: tuple[str, datetime] | None = None
        self._tables: set[str] = set()
        self._chunk = 0
        self._entries: dict[str, list[ManifestEntry]] = {}
        self._rows = 0
        self._quarantined = 0
        self._duplicates = 0

    async def start_file(self, source_key: str, valid_from: datetime) -> None:
        self._file = (source_key, valid_from)
        self._tables = set()
        self._chunk = 0

    async def add(self, tables: Mapping[str, pa.Table], quarantine: pa.Table, duplicates: int = 0) -> None:
        check_chunk(tables)
        file_index = len(self._files)
        self._duplicates += duplicates
        staged: dict[str, pa.Table] = {}
        for lake_table, rows in tables.items():
            if rows.num_rows == 0:
                continue
            lines = rows.column("source_line") if "source_line" in rows.column_names else pa.array(
                range(self._rows, self._rows + rows.num_rows), pa.int64())  # fmt: skip
            table = rows.select(list(SPECS[lake_table].column_names)).cast(_SCHEMAS[lake_table])
            table = table.append_column("file_index", pa.repeat(pa.scalar(file_index, pa.int32()), rows.num_rows))
            staged[lake_table] = table.append_column("row_index", lines.cast(pa.int64()))
            self._tables.add(lake_table)
            self._rows += rows.num_rows
        if quarantine.num_rows:
            staged[sql_redshift.QUARANTINE] = quarantine.select(list(BATCH_QUARANTINE.names)).cast(BATCH_QUARANTINE)
            self._quarantined += quarantine.num_rows
        for name, table in staged.items():
            data = parquet_bytes(table)
            key = f"{self.prefix}{name}/part-{file_index:03d}-{self._chunk:05d}.parquet"
            await self.loader._put(key, data, "application/vnd.apache.parquet")
            self._entries.setdefault(name, []).append(ManifestEntry(f"s3://{self.loader.bucket}/{key}", len(data)))
        self._chunk += 1

    async def end_file(self) -> None:
        if self._file is None:
            raise RuntimeError("end_file without start_file")
        key, valid_from = self._file
        self._files.append(sql_redshift.StagedFile(key, valid_from, frozenset(self._tables)))
        self._file = None

    async def commit(self) -> BatchResult:
        manifests: dict[str, str] = {}
        for name, entries in sorted(self._entries.items()):
            manifest_key = f"{self.prefix}{name}.manifest"
            await self.loader._put(manifest_key, build_manifest(entries), "application/json")
            manifests[name] = f"s3://{self.loader.bucket}/{manifest_key}"
        rows_in = self._rows + self._quarantined + self._duplicates
        partial = BatchResult(rows_in, self._rows, self._quarantined, self._duplicates)
        try:
            batch = sql_redshift.StagedBatch(self.batch_id, self.pipeline, self.loader.target.iam_role or "",
                                             tuple(self._files), manifests, partial)  # fmt: skip
            statements = sql_redshift.load_statements(batch)
        except ValueError as exc:
            raise TerminalError(f"batch {self.batch_id} cannot be loaded into Redshift: {exc}") from exc
        return await self.loader._run(self.batch_id, statements)
