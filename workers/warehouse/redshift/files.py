"""Redshift loader of batch files, through the Redshift Data API (a :class:`~workers.warehouse.file_types.BatchLoader`).

Contract: per batch, the loader puts one Parquet object and one COPY manifest per staged warehouse table under
the deterministic prefix :func:`staging_prefix` (``staging/<pipeline>/<batch_id>/``; SSE-KMS when a key is
configured; a replay overwrites the same objects), then runs ONE ``BatchExecuteStatement`` built by
:func:`workers.warehouse.redshift.file_sql.load_statements` (one transaction: staging COPY, SCD2 / MERGE,
``batch_quarantine`` replace, ``load_audit``, guarded so that an audited batch is a no-op) and returns the
audited counts it answers. Staging objects are left in place (a concurrent load of the same batch may still be
reading them): expire ``staging/`` with an S3 lifecycle rule. Errors are ``common.errors`` classes:
:class:`TerminalError` for a bad plan or a failed statement, :class:`TransientError` for conflicts,
throttling and connection trouble. Logs and errors never carry row values.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
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
from workers.warehouse.file_types import LoadPlan, check_plan
from workers.warehouse.redshift import file_sql as sql_redshift
from workers.warehouse.redshift.client import RedshiftStatements, RedshiftTarget, parse_warehouse_url
from workers.warehouse.vitals_sql import audited_sql

__all__ = ["RedshiftBatchLoader", "staged_tables", "staging_prefix"]

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
        check_plan(plan)
        try:
            prefix = staging_prefix(plan.pipeline, plan.batch_id)
            manifests = {name: await self._stage(prefix, name, rows) for name, rows in staged_tables(plan).items()}
            files = tuple(
                sql_redshift.StagedFile(
                    f.source_key, f.valid_from, frozenset(n for n, t in f.tables.items() if t.num_rows)
                )
                for f in plan.files
            )
            batch = sql_redshift.StagedBatch(
                plan.batch_id, plan.pipeline, self.target.iam_role or "", files, manifests, plan.result()
            )
            statements = sql_redshift.load_statements(batch)
        except ValueError as exc:
            raise TerminalError(f"batch {plan.batch_id} cannot be loaded into Redshift: {exc}") from exc
        table = await self.statements.query(statements, _AUDIT, key=plan.batch_id)
        if table.num_rows == 0:
            raise TerminalError(f"batch {plan.batch_id} has no audit row after its load")
        return BatchResult(**table.to_pylist()[0])

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
