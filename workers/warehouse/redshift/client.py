"""The Redshift Data API plumbing shared by the vitals and the batch (ehr/claims) loaders.

- :func:`parse_warehouse_url`: ``redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?iam_role=ARN[&secret_arn=ARN]
  [&db_user=USER][&kind=workgroup|cluster]`` -> :class:`RedshiftTarget` (``db_user`` implies a provisioned
  cluster; ``iam_role`` falls back to the given default, e.g. ``VITALSTREAM_REDSHIFT_IAM_ROLE``).
- :class:`RedshiftStatements`: runs statements (one ``ExecuteStatement``, or one ``BatchExecuteStatement`` = one
  transaction), polls ``DescribeStatement`` until it finishes and reads results with ``GetStatementResult``.
  Failures are classified: serialization conflicts, deadlocks, throttling, connection trouble and timeouts are
  :class:`TransientError`, everything else :class:`TerminalError`. Error texts carry the server message (at most
  500 characters), never statement text.

Data API limits and lifecycle (Redshift Data API reference and quotas):
- at most :data:`MAX_STATEMENTS` (40) statements per ``BatchExecuteStatement`` and :data:`MAX_SQL_BYTES`
  (100 kB) per statement: checked before anything is sent (:class:`TerminalError`: the caller must split);
- a ``ClientToken`` (1-64 characters, idempotency token) derived from the caller's key (e.g. the batch id)
  and the statements, so a resubmission of the same work returns the statement already running instead of
  starting a second one; a token whose statement failed is not reused by this process;
- a failing ``DescribeStatement`` is retried in place (with backoff, until the deadline) rather than
  abandoning a statement that still runs; at the deadline the statement is cancelled (``CancelStatement``)
  and only then is the failure reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa

from common.errors import TerminalError, TransientError, classify

__all__ = [
    "MAX_SQL_BYTES",
    "MAX_STATEMENTS",
    "RedshiftStatements",
    "RedshiftTarget",
    "check_limits",
    "client_token",
    "parse_warehouse_url",
    "records_to_table",
]

MAX_STATEMENTS = 40
"""``BatchExecuteStatement``: at most 40 SQL statements (the API's ``Sqls`` list)."""
MAX_SQL_BYTES = 100_000
"""Data API quota: a query string of at most 100 kB ("Cannot process query string larger than 100kB")."""

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


def check_limits(sqls: Sequence[str]) -> None:
    """``TerminalError`` unless ``sqls`` fit one Data API call (statement count and size)."""
    if not sqls:
        raise TerminalError("no statements to run")
    if len(sqls) > MAX_STATEMENTS:
        raise TerminalError(f"{len(sqls)} statements in one call; BatchExecuteStatement takes at most {MAX_STATEMENTS}")
    largest = max(len(s.encode()) for s in sqls)
    if largest >= MAX_SQL_BYTES:
        raise TerminalError(f"a statement of {largest} bytes; the Data API takes less than {MAX_SQL_BYTES} bytes")


def client_token(key: str, sqls: Sequence[str], attempt: int = 0) -> str:
    """A ``ClientToken`` (64 hex characters) for running ``sqls`` on behalf of ``key`` (e.g. a batch id)."""
    digest = hashlib.sha256(key.encode())
    for text in sqls:
        digest.update(b"\x00" + text.encode())
    digest.update(f"\x00{attempt}".encode())
    return digest.hexdigest()


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
        self._spent: dict[str, int] = {}  # token base -> attempts whose statement failed (not to be reused)

    async def run(self, sqls: Sequence[str], *, key: str | None = None) -> str:
        """Run ``sqls`` in one transaction; returns the statement id once FINISHED (raises classified errors).

        ``key`` (e.g. the batch id) makes the submission idempotent: the same ``key`` and statements map to the
        same ``ClientToken`` until a statement under it fails.
        """
        check_limits(sqls)
        token = None
        base = ""
        if key is not None:
            base = client_token(key, sqls)
            token = client_token(key, sqls, self._spent.get(base, 0))
        try:
            statement_id = await self._submit(sqls, token)
        except (TransientError, TerminalError):
            raise
        except Exception as exc:
            raise classify(exc)(f"Redshift Data API call failed: {type(exc).__name__}") from exc
        try:
            return await self._wait(statement_id)
        except (TransientError, TerminalError):
            if key is not None:
                self._spent[base] = self._spent.get(base, 0) + 1
            raise

    async def _submit(self, sqls: Sequence[str], token: str | None) -> str:
        extra = {"ClientToken": token} if token else {}
        if len(sqls) == 1:
            response = await self.client.execute_statement(Sql=sqls[0], **self.target.params(), **extra)
        else:
            response = await self.client.batch_execute_statement(Sqls=list(sqls), **self.target.params(), **extra)
        return str(response["Id"])

    async def _wait(self, statement_id: str) -> str:
        """Poll until the statement ends; describe errors are retried in place; cancel at the deadline."""
        deadline = time.monotonic() + self.timeout
        delay = self.poll_seconds
        failures = 0
        while True:
            try:
                described = await self.client.describe_statement(Id=statement_id)
            except Exception as exc:
                kind = classify(exc)
                failures += 1
                if kind is TerminalError and failures > 3:
                    await self._cancel(statement_id)
                    raise TerminalError(f"Redshift DescribeStatement failed: {type(exc).__name__}") from exc
                described = None
            if described is not None:
                failures = 0
                status = described["Status"]
                if status == "FINISHED":
                    return statement_id
                if status in ("FAILED", "ABORTED"):
                    message = str(described.get("Error", status))
                    kind = TransientError if any(h in message.lower() for h in _TRANSIENT_HINTS) else TerminalError
                    raise kind(f"Redshift statement {status.lower()}: {message[:500]}")
            if time.monotonic() > deadline:
                await self._cancel(statement_id)
                raise TransientError(f"Redshift statement {statement_id} not finished after {self.timeout}s: cancelled")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    async def _cancel(self, statement_id: str) -> None:
        """``CancelStatement``, then wait (bounded) until the statement is no longer running."""
        # Already finished, or not cancellable: the describe below tells.
        with contextlib.suppress(Exception):
            await self.client.cancel_statement(Id=statement_id)
        for _ in range(50):
            try:
                described = await self.client.describe_statement(Id=statement_id)
            except Exception:
                return
            if described["Status"] in ("FINISHED", "FAILED", "ABORTED"):
                return
            await asyncio.sleep(self.poll_seconds)

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

    async def query(self, sqls: Sequence[str], schema: pa.Schema, *, key: str | None = None) -> pa.Table:
        """Run ``sqls`` in one transaction and return the last statement's rows."""
        statement_id = await self.run(sqls, key=key)
        return await self.fetch(statement_id if len(sqls) == 1 else f"{statement_id}:{len(sqls)}", schema)
