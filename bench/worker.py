"""Vitals worker CPU path vs the unavoidable work on the same envelope bytes, in one run, one core.

- baseline ("arrow limit"): orjson-decode every envelope, build the Arrow table, write Snappy Parquet
  (the sink's codec).
- worker: ``decode -> dedupe -> check_plausibility -> remove_spikes -> processed/quarantine Parquet`` encode,
  partitioned as the sinks write it (no network), plus the worker-side NEWS2 work of a batch (its touched
  patient-hours, their bounds, the recompute SQL; the scoring itself runs in the warehouse transaction).

Prints ``worker_readings_per_s``, ``arrow_limit_readings_per_s`` and ``worker_vs_arrow_limit: <ratio>``.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import READINGS, TIMESTAMP
from schemas.catalogue import METRICS
from schemas.envelope import READING_COLUMNS, encode_envelope
from workers.sinks.layout import partition_by_hour, partition_by_reason_day
from workers.sinks.parquet_s3 import encode_parquet
from workers.stages.check_plausibility import check_plausibility
from workers.stages.decode import decode
from workers.stages.dedupe import dedupe
from workers.stages.remove_spikes import remove_spikes
from workers.stages.shape import to_pending, to_processed, to_quarantined
from workers.warehouse import news2_sql

T0_US = 1_767_225_600_000_000
_BASE = {"heart_rate": (75.0, 3.0), "spo2": (97.0, 0.8), "resp_rate": (16.0, 1.5), "body_temp": (36.8, 0.1),
         "bp_systolic": (120.0, 4.0), "bp_diastolic": (80.0, 3.0), "glucose": (105.0, 5.0)}  # fmt: skip


def make_envelopes(devices: int = 1000, seconds: int = 70, per_envelope: int = 35, seed: int = 3) -> list[bytes]:
    """Envelopes of ``devices`` devices reporting all 7 metrics each second; 0.5 % spikes, 1 % retries."""
    rng = np.random.default_rng(seed)
    metrics = list(_BASE)
    out: list[bytes] = []
    for d in range(devices):
        device = f"bed-{d:05d}"
        n = seconds * len(metrics)
        metric = np.tile(np.arange(len(metrics)), seconds)
        second = np.repeat(np.arange(seconds), len(metrics))
        base = np.array([_BASE[m][0] for m in metrics])[metric]
        noise = np.array([_BASE[m][1] for m in metrics])[metric]
        values = np.round(base + rng.normal(0, 1, n) * noise, 2)
        spikes = rng.random(n) < 0.005
        values[spikes] += 3 * np.array([25, 8, 8, 1.5, 30, 20, 60])[metric[spikes]]
        measured = T0_US + second * 1_000_000 + d
        for start in range(0, n, per_envelope):
            sl = slice(start, start + per_envelope)
            names = [metrics[i] for i in metric[sl]]
            readings = {
                "message_id": [uuid.UUID(int=int(rng.integers(1 << 62))).hex for _ in names],
                "patient_id": [f"pt-{d:05d}"] * len(names),
                "metric": names,
                "loinc_code": [METRICS[m].loinc_code for m in names],
                "value": [float(v) for v in values[sl]],
                "unit": [METRICS[m].canonical_unit for m in names],
                "measured_at_us": [int(t) for t in measured[sl]],
            }
            data = encode_envelope(uuid.uuid4().hex, device, int(measured[sl][-1]) + 200_000, readings)  # type: ignore[arg-type]
            out.append(data)
            if rng.random() < 0.01:
                out.append(data)
    return out


def arrow_limit(payloads: list[bytes]) -> int:
    """The unavoidable work: decode JSON, build the Arrow table, encode Parquet."""
    columns: dict[str, list[object]] = {name: [] for name in READING_COLUMNS}
    devices: list[str] = []
    counts: list[int] = []
    received: list[int] = []
    for data in payloads:
        env = orjson.loads(data)
        readings = env["readings"]
        for name in READING_COLUMNS:
            columns[name].extend(readings[name])
        devices.append(env["device_id"])
        counts.append(len(readings["metric"]))
        received.append(env["received_at_us"])
    owner = np.repeat(np.arange(len(devices)), counts)
    table = pa.Table.from_arrays(
        [
            pa.array(devices, pa.string()).take(owner),
            pa.array(columns["patient_id"], pa.string()),
            pa.array(columns["metric"], pa.string()),
            pa.array(columns["loinc_code"], pa.string()),
            pa.array(columns["value"], pa.float64()),
            pa.array(columns["unit"], pa.string()),
            pa.array(columns["measured_at_us"], TIMESTAMP),
            pa.array(np.asarray(received)[owner], pa.int64()).cast(TIMESTAMP),
            pa.array(columns["message_id"], pa.string()),
        ],
        names=[f.name for f in READINGS][:9],
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="snappy")
    return int(table.num_rows)


def worker_path(payloads: list[bytes]) -> int:
    """The worker's CPU path for one batch, without network."""
    decoded = decode(payloads, [str(i) for i in range(len(payloads))])
    deduped = dedupe(decoded.readings)
    plausible = check_plausibility(deduped.kept)
    spikes = remove_spikes(plausible.kept, now_us=T0_US + 3600 * 1_000_000)
    clean = to_processed(spikes.accepted, "bench")
    quarantined = to_quarantined([plausible.rejected, spikes.quarantined], "bench")
    to_pending(spikes.held, "bench", "shard-0")
    hours = news2_sql.touched_hours(clean)  # what the PostgreSQL loader stages (Redshift: hour_bounds only)
    bounds = news2_sql.hour_bounds(news2_sql.news2_rows(clean).column("measured_at"))
    if bounds is not None:
        news2_sql.news2_statements("'bench'", bounds[0], bounds[1], "postgres", hours_staged=hours.num_rows > 0)
    for _day, _hour, rows in partition_by_hour(clean):
        encode_parquet(rows)
    for _reason, _day, rows in partition_by_reason_day(quarantined):
        encode_parquet(rows)
    return int(decoded.readings.num_rows)


def _best(fn: Callable[[list[bytes]], int], payloads: list[bytes], repeats: int) -> float:
    best = float("inf")
    rows = 0
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        rows = fn(payloads)
        best = min(best, time.perf_counter() - started)
    return rows / best


def run(devices: int = 1000, seconds: int = 70, repeats: int = 3) -> dict[str, float]:
    """Measure both paths on the same bytes; prints and returns the figures."""
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    payloads = make_envelopes(devices, seconds)
    arrow_limit(payloads[:100])
    worker_path(payloads[:100])
    limit = _best(arrow_limit, payloads, repeats)
    worker = _best(worker_path, payloads, repeats)
    figures = {
        "arrow_limit_readings_per_s": limit,
        "worker_readings_per_s": worker,
        "worker_vs_arrow_limit": worker / limit,
    }
    print(f"arrow_limit_readings_per_s: {limit:,.0f}")
    print(f"worker_readings_per_s: {worker:,.0f}")
    print(f"worker_vs_arrow_limit: {worker / limit:.3f}")
    return figures


if __name__ == "__main__":
    run()
