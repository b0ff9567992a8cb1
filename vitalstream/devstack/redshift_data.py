"""A Redshift Data API stand-in: the ``redshift-data`` JSON protocol over HTTP, backed by PostgreSQL.

Speaks ``X-Amz-Target: RedshiftData.{ExecuteStatement,BatchExecuteStatement,DescribeStatement,
GetStatementResult}`` (JSON 1.1), so aiobotocore's real ``redshift-data`` client (endpoint
``AWS_ENDPOINT_URL_REDSHIFT_DATA``) runs unchanged against it. Statements run asynchronously on the private
PostgreSQL, one fresh connection per request: a batch in one transaction, like the real service (temporary
tables live for that request only). ``COPY t [(cols)] FROM 's3://…' IAM_ROLE '…' FORMAT AS PARQUET
[MANIFEST]`` is performed here: the manifest (or every object under the prefix) is read from S3 (moto),
the Parquet columns are mapped to the column list by position, and the rows are binary-COPYed into ``t``.
Everything else is passed to PostgreSQL as written (the generated Redshift SQL is PostgreSQL-compatible).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pgpq
import pyarrow as pa
import pyarrow.parquet as pq

from common.aws import ClientFactory

__all__ = ["RedshiftDataStandIn", "main", "start_redshift_data"]

_COPY = re.compile(
    r"^\s*COPY\s+(?P<table>[A-Za-z_][A-Za-z0-9_.]*)\s*(?:\((?P<cols>[^)]*)\))?\s+FROM\s+'(?P<url>[^']*)'\s+(?P<opts>.*)$",
    re.IGNORECASE | re.DOTALL,
)
PAGE_ROWS = 1000


@dataclass
class _Statement:
    id: str
    sqls: list[str]
    database: str
    status: str = "SUBMITTED"
    error: str | None = None
    created: float = field(default_factory=lambda: dt.datetime.now(dt.UTC).timestamp())
    updated: float = 0.0
    results: list[tuple[list[str], list[tuple[Any, ...]]] | None] = field(default_factory=list)
    sub_status: list[str] = field(default_factory=list)


def _cell(value: Any) -> dict[str, Any]:
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, Decimal):
        return {"stringValue": str(value)}
    if isinstance(value, dt.datetime):
        return {"stringValue": value.isoformat(sep=" ")}
    if isinstance(value, dt.date):
        return {"stringValue": value.isoformat()}
    return {"stringValue": str(value)}


class RedshiftDataStandIn:
    """The protocol handler; ``serve`` binds it to a TCP port."""

    def __init__(self, warehouse_url: str, region: str = "us-east-1") -> None:
        self.warehouse_url = warehouse_url
        self.region = region
        self.statements: dict[str, _Statement] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    # -- execution ---------------------------------------------------------------------------------------
    async def _copy(self, conn: Any, match: re.Match[str]) -> None:
        table, url, opts = match["table"], match["url"], match["opts"]
        if "PARQUET" not in opts.upper():
            raise ValueError("the stand-in supports COPY … FORMAT AS PARQUET only")
        bucket, _, key = url.removeprefix("s3://").partition("/")
        async with ClientFactory(self.region).client("s3") as s3:
            if re.search(r"\bMANIFEST\b", opts, re.IGNORECASE):
                manifest = orjson.loads(await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read())
                urls = [(e["url"], bool(e.get("mandatory", False))) for e in manifest.get("entries", [])]
            else:
                listing = await s3.list_objects_v2(Bucket=bucket, Prefix=key)
                urls = [(f"s3://{bucket}/{o['Key']}", True) for o in listing.get("Contents", [])]
                if not urls:
                    raise ValueError(f"The specified S3 prefix '{key}' does not exist")
            tables = []
            for entry_url, mandatory in urls:
                b, _, k = entry_url.removeprefix("s3://").partition("/")
                try:
                    body = await (await s3.get_object(Bucket=b, Key=k))["Body"].read()
                except s3.exceptions.NoSuchKey:
                    if mandatory:
                        raise ValueError(f"Manifest file entry {entry_url} is mandatory but not found") from None
                    continue
                tables.append(pq.read_table(io.BytesIO(body)))
        if not tables:
            return
        data = pa.concat_tables(tables)
        columns = [c.strip() for c in match["cols"].split(",")] if match["cols"] else None
        if columns is not None:
            if len(columns) != data.num_columns:
                raise ValueError(f"COPY column list has {len(columns)} columns, Parquet has {data.num_columns}")
            data = data.rename_columns(columns)
        encoder = pgpq.ArrowToPostgresBinaryEncoder(data.schema)
        parts = [encoder.write_header(), *(encoder.write_batch(b) for b in data.to_batches()), encoder.finish()]
        payload = b"".join(bytes(p) for p in parts)
        await conn.copy_to_table(table, source=io.BytesIO(payload), format="binary", columns=data.column_names)

    async def _run(self, st: _Statement) -> None:
        st.status = "STARTED"
        st.sub_status = ["SUBMITTED"] * len(st.sqls)
        try:
            conn = await asyncpg.connect(self.warehouse_url)
        except Exception as exc:
            st.status, st.error = "FAILED", f"connection failed: {exc}"
            return
        try:
            async with conn.transaction():
                for i, text in enumerate(st.sqls):
                    st.sub_status[i] = "STARTED"
                    match = _COPY.match(text)
                    if match:
                        await self._copy(conn, match)
                        st.results.append(None)
                    else:
                        stmt = await conn.prepare(text)
                        if stmt.get_attributes():
                            records = await stmt.fetch()
                            names = [a.name for a in stmt.get_attributes()]
                            st.results.append((names, [tuple(r.values()) for r in records]))
                        else:
                            await stmt.fetch()
                            st.results.append(None)
                    st.sub_status[i] = "FINISHED"
            st.status = "FINISHED"
        except Exception as exc:
            st.status = "FAILED"
            st.error = f"ERROR: {exc}"
            st.sub_status = [s if s == "FINISHED" else "FAILED" for s in st.sub_status]
        finally:
            st.updated = dt.datetime.now(dt.UTC).timestamp()
            await conn.close()

    def _submit(self, body: dict[str, Any], sqls: list[str]) -> dict[str, Any]:
        st = _Statement(id=str(uuid.uuid4()), sqls=sqls, database=str(body.get("Database", "")))
        self.statements[st.id] = st
        task = asyncio.create_task(self._run(st))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        out = {"Id": st.id, "CreatedAt": st.created, "Database": st.database}
        for key in ("ClusterIdentifier", "WorkgroupName", "DbUser", "SecretArn"):
            if key in body:
                out[key] = body[key]
        return out

    def _find(self, statement_id: str) -> tuple[_Statement, int | None]:
        base, _, sub = statement_id.partition(":")
        st = self.statements.get(base)
        if st is None or (sub and not (sub.isdigit() and 1 <= int(sub) <= len(st.sqls))):
            raise KeyError(statement_id)
        return st, int(sub) - 1 if sub else None

    def _describe(self, body: dict[str, Any]) -> dict[str, Any]:
        st, sub = self._find(str(body["Id"]))
        if sub is not None:
            return self._describe_sub(st, sub)
        result = st.results[-1] if len(st.sqls) == 1 and st.results else None
        out: dict[str, Any] = {
            "Id": st.id, "Status": st.status, "CreatedAt": st.created, "UpdatedAt": st.updated or st.created,
            "Database": st.database, "HasResultSet": result is not None,
            "ResultRows": len(result[1]) if result else -1, "QueryString": st.sqls[0] if len(st.sqls) == 1 else "",
            "RedshiftPid": 0,
        }  # fmt: skip
        if st.error:
            out["Error"] = st.error
        if len(st.sqls) > 1:
            out["SubStatements"] = [self._describe_sub(st, i) for i in range(len(st.sqls))]
        return out

    def _describe_sub(self, st: _Statement, i: int) -> dict[str, Any]:
        result = st.results[i] if i < len(st.results) else None
        status = st.sub_status[i] if i < len(st.sub_status) else "SUBMITTED"
        out: dict[str, Any] = {
            "Id": f"{st.id}:{i + 1}", "Status": status, "QueryString": st.sqls[i], "HasResultSet": result is not None,
            "ResultRows": len(result[1]) if result else -1, "CreatedAt": st.created,
        }  # fmt: skip
        if status == "FAILED" and st.error:
            out["Error"] = st.error
        return out

    def _result(self, body: dict[str, Any]) -> dict[str, Any]:
        st, sub = self._find(str(body["Id"]))
        index = sub if sub is not None else len(st.sqls) - 1
        if st.status != "FINISHED" or index >= len(st.results) or st.results[index] is None:
            raise LookupError("Query does not have result. Please check query status with DescribeStatement.")
        names, rows = st.results[index]  # type: ignore[misc]
        start = int(body.get("NextToken") or 0)
        page = rows[start : start + PAGE_ROWS]
        out: dict[str, Any] = {
            "Records": [[_cell(v) for v in row] for row in page],
            "ColumnMetadata": [{"name": n, "label": n} for n in names],
            "TotalNumRows": len(rows),
        }
        if start + PAGE_ROWS < len(rows):
            out["NextToken"] = str(start + PAGE_ROWS)
        return out

    def dispatch(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one request: ``(HTTP status, JSON body)``."""
        action = target.rpartition(".")[2]
        try:
            if action == "ExecuteStatement":
                return 200, self._submit(body, [str(body["Sql"])])
            if action == "BatchExecuteStatement":
                return 200, self._submit(body, [str(s) for s in body["Sqls"]])
            if action == "DescribeStatement":
                return 200, self._describe(body)
            if action == "GetStatementResult":
                return 200, self._result(body)
        except KeyError as exc:
            return 400, {"__type": "ResourceNotFoundException", "message": f"Query {exc} does not exist"}
        except LookupError as exc:
            return 400, {"__type": "ValidationException", "message": str(exc)}
        return 400, {"__type": "ValidationException", "message": f"unsupported action {action}"}

    # -- HTTP --------------------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    body = orjson.loads(raw) if raw else {}
                    status, payload = self.dispatch(headers.get("x-amz-target", ""), body)
                except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                    status, payload = 400, {"__type": "ValidationException", "message": str(exc)}
                data = orjson.dumps(payload)
                reason = "OK" if status == 200 else "Bad Request"
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.1\r\n"
                    f"Content-Length: {len(data)}\r\nx-amzn-RequestId: {uuid.uuid4()}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port."""
        self._server = await asyncio.start_server(self._client, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def start_redshift_data(warehouse_url: str, port: int = 0) -> tuple[RedshiftDataStandIn, str]:
    """Start the stand-in in the running event loop; returns it and its endpoint URL."""
    stand_in = RedshiftDataStandIn(warehouse_url)
    bound = await stand_in.serve(port=port)
    return stand_in, f"http://127.0.0.1:{bound}"


def main(argv: list[str] | None = None) -> int:
    """``python -m vitalstream.devstack.redshift_data --warehouse-url URL --port N``: serve until killed."""
    parser = argparse.ArgumentParser(description="Redshift Data API stand-in backed by PostgreSQL")
    parser.add_argument("--warehouse-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    async def run() -> None:
        stand_in, url = await start_redshift_data(args.warehouse_url, args.port)
        print(url, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await stand_in.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
