"""Batch claims files end to end: a generated claims CSV streamed from S3 (moto server) through the real
``claims`` handler (parse per chunk -> lake Parquet parts -> PostgreSQL COPY per chunk -> merge -> audit), in a
worker subprocess whose peak RSS is read after the load: ``VmHWM``, the high-water mark of the worker's own
address space since its exec. (Not ``ru_maxrss``: Linux carries that over exec from the forking process, so a
worker started after the 100 MB case's ``read_csv`` baseline reported this bench's own ~500 MiB as its peak.)
The worker also samples its RSS every 0.25 s and prints the highest of each tenth of the load (flat when
memory does not grow with the file); ``BENCH_RSS_TRACE=prefix`` writes every sample and each cyclic garbage
collection to ``prefix.<object name>.json``. ``BENCH_FILE_CACHE=dir`` keeps the generated files there for the
next run (the 1 GB file takes minutes to generate).

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
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
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


def _generated(path: Path, target_bytes: int, kind: str, compress: bool) -> int:
    """:func:`_generate`, or with ``BENCH_FILE_CACHE=dir`` the file kept there from an earlier run (linked)."""
    cache = os.environ.get("BENCH_FILE_CACHE")
    if not cache:
        return _generate(path, target_bytes, kind, compress)
    kept = Path(cache) / path.name
    rows_file = kept.with_name(kept.name + ".rows")
    if not rows_file.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        rows_file.write_text(str(_generate(kept, target_bytes, kind, compress)))
    path.symlink_to(kept)
    return int(rows_file.read_text())


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


_MAXRSS_AT_START = [0.0]  # the worker's ru_maxrss before it did anything (inherited, see the module docstring)


class _RssSampler:
    """The process's resident set (``VmRSS``) every ``period`` seconds in a daemon thread, and the moments the
    cyclic garbage collector freed objects (``marks``: seconds, ``gc<generation>:<objects>:<VmRSS after>``)."""

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self.samples: list[tuple[float, float]] = []
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _RssSampler:
        gc.callbacks.append(self._collected)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._collected)

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["collected"]:
            at = time.perf_counter() - self._started
            self.marks.append((at, f"gc{info['generation']}:{info['collected']}:{_status_mib('VmRSS'):.0f}"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - self._started, _status_mib("VmRSS")))
            self._stop.wait(self.period)

    def tenths(self) -> list[float]:
        """The highest RSS (MiB) in each tenth of the run: flat when memory does not grow with the file."""
        if not self.samples:
            return []
        end = self.samples[-1][0] or 1.0
        out = [0.0] * 10
        for at, rss in self.samples:
            slot = min(int(at / end * 10), 9)
            out[slot] = max(out[slot], rss)
        return out


def _status_mib(field: str) -> float:
    """A memory figure of this process from ``/proc/self/status`` (Linux), in MiB; 0 where there is none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


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
        with _RssSampler() as sampler:
            started = time.perf_counter()
            result = await handler.handle(make_batch(pipeline, key, [record]))
            seconds = time.perf_counter() - started
    if os.environ.get("BENCH_RSS_TRACE"):  # a path prefix: <prefix>.<object name>.json
        trace = Path(f"{os.environ['BENCH_RSS_TRACE']}.{Path(key).name}.json")
        await asyncio.to_thread(trace.write_text, json.dumps({"samples": sampler.samples, "gc": sampler.marks}))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "rows_in": result.rows_in,
        "rows_loaded": result.rows_loaded,
        "seconds": seconds,
        "peak_rss_mib": _status_mib("VmHWM") or usage.ru_maxrss / 1024,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "maxrss_at_start_mib": _MAXRSS_AT_START[0],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_tenths": sampler.tenths(),
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
                rows = _generated(path, mib * MIB, kind, compress)
                key = f"raw/claims/{path.name}" if kind == "claims" else f"raw/ehr/fhir/{path.name}"
                asyncio.run(_upload(endpoint, path, key))
                server_cpu = _server_cpu(server.process.pid)
                out = _worker(endpoint, server.url, key, "claims" if kind == "claims" else "ehr", path.stat().st_size)
                time.sleep(0.5)  # the worker's backends exit and are reaped
                server_cpu = _server_cpu(server.process.pid) - server_cpu
                figures[f"batch_peak_rss_mib_{name}"] = out["peak_rss_mib"]
                rate = out["rows_in"] / out["seconds"]
                print(f"{name}: {rows:,} lines, {path.stat().st_size / MIB:,.0f} MiB on S3, {rate:,.0f} rows/s, "
                      f"{out['seconds']:.1f} s, peak RSS {out['peak_rss_mib']:.0f} MiB, "
                      f"CPU s worker {out['cpu_s']:.1f} PostgreSQL {server_cpu:.1f}", flush=True)  # fmt: skip
                print(f"{name}: RSS MiB by tenth of the load: {' '.join(f'{v:.0f}' for v in out['rss_tenths'])}; "
                      f"ru_maxrss {out['maxrss_mib']:.0f} (inherited at exec: {out['maxrss_at_start_mib']:.0f})",
                      flush=True)  # fmt: skip
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
                path.unlink()  # a link when cached: the kept file stays
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

        _MAXRSS_AT_START[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        tune_allocator()  # as workers.main does
        endpoint, warehouse, key, pipeline, size = sys.argv[2:7]
        print(json.dumps(asyncio.run(_handle(warehouse, key, pipeline, int(size)))))
    else:
        run()
