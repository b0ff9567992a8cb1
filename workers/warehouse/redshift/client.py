"""The Redshift Data API plumbing shared by the vitals and the batch (ehr/claims) loaders.

- :func:`parse_warehouse_url`: ``redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?iam_role=ARN[&secret_arn=ARN]
  [&db_user=USER][&kind=workgroup|cluster]`` -> :class:`RedshiftTarget` (``db_user`` implies a provisioned
  cluster; ``iam_role`` falls back to the given default, e.g. ``VITALSTREAM_REDSHIFT_IAM_ROLE``).
- :class:`RedshiftStatements`: runs statements (one ``ExecuteStatement``, or one ``BatchExecuteStatement`` = one
  transaction), polls ``DescribeStatement`` until it finishes and reads results with ``GetStatementResult``.
  Failures are classified: serialization conflicts, deadlocks, throttling, connection trouble and timeouts are
  :class:`TransientError`, everything else :class:`TerminalError`. Error texts carry the server message (at most
  500 characters), never statement text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from common.errors import TerminalError, TransientError, classify

__all__ = ["RedshiftStatements", "RedshiftTarget", "parse_warehouse_url", "records_to_table"]

_TRANSIENT_HINTS = ("serializable isolation", "deadlock", "connection", "timeout", "throttl", "could not serialize")


@dataclass(frozen=True, slots=True)
class RedshiftTarget:
    """Where statements run: a database in a serverless workgroup or a provisioned cluster."""

    database: str
    workgroup: str | None = None
    cluster: str | None = None
    secret_arn: str | None = None
    db_user: str | None = None
    iam_role: str | None = None

    def params(self) -> dict[str, str]:
        """The Data API request parameters naming this target."""
        out = {"Database": self.database}
        if self.workgroup:
            out["WorkgroupName"] = self.workgroup
        if self.cluster:
            out["ClusterIdentifier"] = self.cluster
        if self.secret_arn:
            out["SecretArn"] = self.secret_arn
        if self.db_user:
            out["DbUser"] = self.db_user
        return out


def parse_warehouse_url(url: str, iam_role: str | None = None) -> RedshiftTarget:
    """Parse a ``redshift-data://`` URL; ``ValueError`` for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "redshift-data" or not parts.hostname or not parts.path.strip("/"):
        raise ValueError("expected redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?…")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    name = parts.hostname
    kind = query.get("kind") or ("cluster" if "db_user" in query else "workgroup")
    return RedshiftTarget(
        database=parts.path.strip("/"),
        workgroup=name if kind == "workgroup" else None,
        cluster=name if kind == "cluster" else None,
        secret_arn=query.get("secret_arn"),
        db_user=query.get("db_user"),
        iam_role=query.get("iam_role") or iam_role,
    )


def _convert(value: str, dtype: pa.DataType) -> Any:
    if pa.types.is_timestamp(dtype):
        moment = dt.datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    if pa.types.is_date(dtype):
        return dt.date.fromisoformat(value)
    if pa.types.is_decimal(dtype):
        return Decimal(value)
    if pa.types.is_floating(dtype):
        return float(value)
    if pa.types.is_integer(dtype):
        return int(value)
    return value


def records_to_table(records: Sequence[Sequence[dict[str, Any]]], schema: pa.Schema) -> pa.Table:
    """Data API ``Records`` (typed cells, columns in ``schema`` order) as an Arrow table."""
    columns: list[list[Any]] = [[] for _ in schema]
    for row in records:
        for i, cell in enumerate(row):
            if cell.get("isNull"):
                columns[i].append(None)
            elif "stringValue" in cell:
                columns[i].append(_convert(cell["stringValue"], schema.field(i).type))
            else:
                columns[i].append(next(iter(cell.values())))
    return pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


class RedshiftStatements:
    """Runs SQL on one :class:`RedshiftTarget` through an injected aiobotocore ``redshift-data`` client."""

    def __init__(self, client: Any, target: RedshiftTarget, *, poll_seconds: float = 0.05, timeout: float = 600):
        self.client = client
        self.target = target
        self.poll_seconds = poll_seconds
        self.timeout = timeout

    async def run(self, sqls: Sequence[str]) -> str:
        """Run ``sqls`` in one transaction; returns the statement id once FINISHED (raises classified errors)."""
        try:
            if len(sqls) == 1:
                response = await self.client.execute_statement(Sql=sqls[0], **self.target.params())
            else:
                response = await self.client.batch_execute_statement(Sqls=list(sqls), **self.target.params())
            statement_id = str(response["Id"])
            deadline = time.monotonic() + self.timeout
            delay = self.poll_seconds
            while True:
                described = await self.client.describe_statement(Id=statement_id)
                status = described["Status"]
                if status == "FINISHED":
                    return statement_id
                if status in ("FAILED", "ABORTED"):
                    message = str(described.get("Error", status))
                    kind = TransientError if any(h in message.lower() for h in _TRANSIENT_HINTS) else TerminalError
                    raise kind(f"Redshift statement {status.lower()}: {message[:500]}")
                if time.monotonic() > deadline:
                    raise TransientError(f"Redshift statement {statement_id} still {status} after {self.timeout}s")
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 2.0)
        except (TransientError, TerminalError):
            raise
        except Exception as exc:
            raise classify(exc)(f"Redshift Data API call failed: {type(exc).__name__}") from exc

    async def fetch(self, statement_id: str, schema: pa.Schema) -> pa.Table:
        """Every result row of ``statement_id`` (``ID:N`` for the N-th statement of a batch) as ``schema``."""
        records: list[Any] = []
        token: str | None = None
        try:
            while True:
                kwargs: dict[str, Any] = {"Id": statement_id}
                if token:
                    kwargs["NextToken"] = token
                page = await self.client.get_statement_result(**kwargs)
                records.extend(page.get("Records", []))
                token = page.get("NextToken")
                if not token:
                    return records_to_table(records, schema)
        except Exception as exc:
            raise classify(exc)(f"Redshift Data API call failed: {type(exc).__name__}") from exc

    async def query(self, sqls: Sequence[str], schema: pa.Schema) -> pa.Table:
        """Run ``sqls`` in one transaction and return the last statement's rows."""
        statement_id = await self.run(sqls)
        return await self.fetch(statement_id if len(sqls) == 1 else f"{statement_id}:{len(sqls)}", schema)
