"""Batch claims files end to end: a generated claims CSV streamed from S3 (moto server) through the real
``claims`` handler (parse per chunk -> lake Parquet parts -> PostgreSQL COPY per chunk -> merge -> audit), in a
worker subprocess whose peak RSS (``ru_maxrss``) is read after the load.

Prints, against the same file in the same run:

- ``claims_rows_per_s``: rows of the file / seconds of the whole handler (S3 read to commit);
- ``claims_vs_arrow_csv``: that over pyarrow's own ``read_csv`` of the same file (local disk, default options);
- ``claims_parse_rows_per_s`` / ``claims_parse_vs_arrow_csv``: the streaming reader alone (no S3, no warehouse);
- ``batch_peak_rss_mib_<size>``: the worker's peak RSS for each file size, and their ratio;
- ``claims_worker_cpu_s`` / ``claims_postgres_cpu_s``: CPU seconds the worker process and the PostgreSQL server
  spent on the 100 MB load (the machine may be shared: CPU seconds move less with other load than wall time).

``python -m bench.batchfiles`` runs the 100 MB file (``make bench``); ``BENCH_BIGFILES=1`` (``make bigfiles``)
adds the 1 GB claims file (plain and gzip) and a 500 MB FHIR NDJSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pyarrow.csv as pcsv

from common.aws import ClientFactory
from vitalstream.devstack.bootstrap import apply_ddl
from vitalstream.devstack.emulators import start_moto
from vitalstream.devstack.postgres import remove_data_dir, start_postgres
from vitalstream.devstack.processes import stop_pid

BUCKET = "bench-lake"
MIB = 1024 * 1024
CLAIM_LINE_BYTES = 78  # about, for the generator's rows


def _generate(path: Path, target_bytes: int, kind: str, compress: bool) -> int:
    from tests.helpers.bigfiles import write_claims, write_fhir

    with open(path, "wb") as out:
        if kind == "claims":
            expected = write_claims(out, target_bytes // CLAIM_LINE_BYTES, compress=compress)
        else:
            expected = write_fhir(out, target_bytes // 260, compress=compress)
    return expected.rows


def _aws_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1"}  # fmt: skip


async def _upload(endpoint: str, path: Path, key: str) -> None:
    os.environ.update(_aws_env(endpoint))
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(ClientFactory("us-east-1").client("s3"))
        with contextlib.suppress(Exception):  # exists already
            await s3.create_bucket(Bucket=BUCKET)
        with open(path, "rb") as body:  # noqa: ASYNC230 - a benchmark's setup; streamed by botocore
            await s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentLength=os.fstat(body.fileno()).st_size)


def _worker(endpoint: str, warehouse: str, key: str, pipeline: str, size: int) -> dict[str, Any]:
    """Run :func:`_handle` in a fresh interpreter; its figures (JSON on the last stdout line)."""
    env = {**os.environ, **_aws_env(endpoint)}
    argv = [sys.executable, "-m", "bench.batchfiles", "--worker", endpoint, warehouse, key, pipeline, str(size)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=3600)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def _handle(warehouse: str, key: str, pipeline: str, size: int) -> dict[str, Any]:
    from workers.pipelines import claims, ehr
    from workers.pipelines.files import FileBatchHandler, FileSettings
    from workers.runtime.types import ObjectRef, SourceRecord, make_batch
    from workers.sinks.files_s3 import LakeWriter
    from workers.warehouse.postgres.files import PostgresBatchLoader

    chunk = int(os.environ.get("VITALSTREAM_FILE_CHUNK_BYTES", 4 * MIB))
    async with AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(ClientFactory("us-east-1").client("s3"))
        loader = await PostgresBatchLoader.connect(warehouse)
        stack.push_async_callback(loader.close)
        parse = claims.claims_parser(chunk) if pipeline == "claims" else ehr.ehr_parser(chunk)
        tables = claims.LAKE_TABLES if pipeline == "claims" else ehr.LAKE_TABLES
        handler = FileBatchHandler(pipeline, parse, LakeWriter(s3, BUCKET), loader, tables,
                                   settings=FileSettings(read_bytes=chunk, max_ratio=1000))  # fmt: skip
        record = SourceRecord(b"", key, "bench", int(time.time() * 1e6), ObjectRef(BUCKET, key, None, size))
        started = time.perf_counter()
        result = await handler.handle(make_batch(pipeline, key, [record]))
        seconds = time.perf_counter() - started
    return {
        "rows_in": result.rows_in,
        "rows_loaded": result.rows_loaded,
        "seconds": seconds,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
    }


def _server_cpu(pid: int) -> float:
    """CPU seconds of the PostgreSQL server ``pid``: itself, its live children and the children it reaped (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    fields = stat(pid)
    total = sum(int(v) for v in fields[11:15])
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                child = stat(int(entry.name))
                if child[1] == str(pid):
                    total += sum(int(v) for v in child[11:15])
    return total / tick


def _arrow_baseline(path: Path) -> float:
    started = time.perf_counter()
    table = pcsv.read_csv(path)
    rows = table.num_rows
    return rows / (time.perf_counter() - started)


def _parse_only(path: Path) -> float:
    from workers.formats.claims import parse_claims_stream

    def chunks() -> Any:
        with open(path, "rb") as f:
            while block := f.read(8 * MIB):
                yield block

    started = time.perf_counter()
    rows = sum(r.good.num_rows + r.rejected.num_rows + r.duplicates for r in parse_claims_stream(chunks()))
    return rows / (time.perf_counter() - started)


def run() -> dict[str, float]:
    big = os.environ.get("BENCH_BIGFILES") == "1"
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vitalstream-bench-files-") as tmp:
        base = Path(tmp)
        moto, endpoint = start_moto(base / "logs")
        server = start_postgres(base / "logs", base)
        try:
            asyncio.run(apply_ddl(server.url))
            cases = [("claims", 100, False)]
            if big:
                cases += [("claims", 1024, False), ("claims", 1024, True), ("fhir", 500, False)]
            if os.environ.get("BENCH_CASES"):  # e.g. claims:100,claims:1024,claims:1024:gz,fhir:500
                cases = [(c.split(":")[0], int(c.split(":")[1]), c.endswith(":gz"))
                         for c in os.environ["BENCH_CASES"].split(",")]  # fmt: skip
            for kind, mib, compress in cases:
                name = f"{kind}_{mib}mib{'_gz' if compress else ''}"
                path = base / (name + (".gz" if compress else ""))
                rows = _generate(path, mib * MIB, kind, compress)
                key = f"raw/claims/{path.name}" if kind == "claims" else f"raw/ehr/fhir/{path.name}"
                asyncio.run(_upload(endpoint, path, key))
                server_cpu = _server_cpu(server.process.pid)
                out = _worker(endpoint, server.url, key, "claims" if kind == "claims" else "ehr", path.stat().st_size)
                time.sleep(0.5)  # the worker's backends exit and are reaped
                server_cpu = _server_cpu(server.process.pid) - server_cpu
                figures[f"batch_peak_rss_mib_{name}"] = out["maxrss_mib"]
                rate = out["rows_in"] / out["seconds"]
                print(f"{name}: {rows:,} lines, {path.stat().st_size / MIB:,.0f} MiB on S3, {rate:,.0f} rows/s, "
                      f"{out['seconds']:.1f} s, peak RSS {out['maxrss_mib']:.0f} MiB, CPU s worker {out['cpu_s']:.1f} "
                      f"PostgreSQL {server_cpu:.1f}", flush=True)  # fmt: skip
                if kind == "claims" and not compress and mib == 100:
                    arrow = _arrow_baseline(path)
                    parse = _parse_only(path)
                    figures.update(
                        claims_rows_per_s=rate,
                        claims_vs_arrow_csv=rate / arrow,
                        claims_parse_rows_per_s=parse,
                        claims_parse_vs_arrow_csv=parse / arrow,
                        arrow_csv_rows_per_s=arrow,
                        claims_worker_cpu_s=out["cpu_s"],
                        claims_postgres_cpu_s=server_cpu,
                    )
                path.unlink()
        finally:
            stop_pid(moto.pid, sig=signal.SIGINT)
            stop_pid(server.process.pid, sig=signal.SIGINT)
            remove_data_dir(server.data_dir)
    if "claims_rows_per_s" in figures:
        for name in ("claims_rows_per_s", "arrow_csv_rows_per_s", "claims_parse_rows_per_s"):
            print(f"{name}: {figures[name]:,.0f}")
        print(f"claims_vs_arrow_csv: {figures['claims_vs_arrow_csv']:.3f}")
        print(f"claims_parse_vs_arrow_csv: {figures['claims_parse_vs_arrow_csv']:.3f}")
        print(f"claims_worker_cpu_s: {figures['claims_worker_cpu_s']:.1f}")
        print(f"claims_postgres_cpu_s: {figures['claims_postgres_cpu_s']:.1f}")
    for name, value in figures.items():
        if name.startswith("batch_peak_rss_mib_"):
            print(f"{name}: {value:.0f}")
    if "batch_peak_rss_mib_claims_1024mib" in figures and "batch_peak_rss_mib_claims_100mib" in figures:
        ratio = figures["batch_peak_rss_mib_claims_1024mib"] / figures["batch_peak_rss_mib_claims_100mib"]
        figures["batch_peak_rss_1g_over_100m"] = ratio
        print(f"batch_peak_rss_1g_over_100m: {ratio:.2f}")
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        from workers.runtime.memory import tune_allocator

        tune_allocator()  # as workers.main does
        endpoint, warehouse, key, pipeline, size = sys.argv[2:7]
        print(json.dumps(asyncio.run(_handle(warehouse, key, pipeline, int(size)))))
    else:
        run()
