"""The telemetry every worker emits, on an injected registry (no import-time registration)."""

from __future__ import annotations

import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.metrics import LATENCY_BUCKETS

FRESHNESS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class WorkerMetrics:
    """Metric families of one worker process; label ``pipeline`` is bound once here.

    Names are part of the operational contract (dashboards and alerts in ``deploy/``).
    """

    def __init__(self, registry: CollectorRegistry, pipeline: str) -> None:
        self.pipeline = pipeline
        self.records_in = Counter(
            "vitalstream_worker_records_in_total", "Records delivered by the source", ["pipeline"], registry=registry
        )
        self.batches_committed = Counter(
            "vitalstream_worker_batches_committed_total",
            "Batches made durable and checkpointed",
            ["pipeline"],
            registry=registry,
        )
        self.batch_commit_seconds = Histogram(
            "vitalstream_worker_batch_commit_seconds",
            "Time from flush decision to checkpoint, per batch",
            ["pipeline"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.millis_behind_latest = Gauge(
            "vitalstream_worker_millis_behind_latest",
            "Kinesis MillisBehindLatest of the last GetRecords, per shard",
            ["pipeline", "shard"],
            registry=registry,
        )
        self.leases_held = Gauge(
            "vitalstream_worker_leases_held", "Shard leases this worker holds", ["pipeline"], registry=registry
        )
        self.checkpoint_age = Gauge(
            "vitalstream_worker_checkpoint_age_seconds",
            "Seconds since the shard's checkpoint last advanced while it had uncheckpointed records (0 if none)",
            ["pipeline", "shard"],
            registry=registry,
        )
        self.rows_quarantined = Counter(
            "vitalstream_worker_rows_quarantined_total",
            "Rows routed to quarantine",
            ["pipeline", "reason"],
            registry=registry,
        )
        self.rows_duplicate = Counter(
            "vitalstream_worker_rows_duplicate_total", "Rows dropped as duplicates", ["pipeline"], registry=registry
        )
        self.freshness = Histogram(
            "vitalstream_worker_freshness_seconds",
            "Age of a batch's oldest record at commit (arrival to durable)",
            ["pipeline"],
            buckets=FRESHNESS_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "vitalstream_worker_errors_total", "Errors by kind", ["pipeline", "kind"], registry=registry
        )
        self.leases_held.labels(pipeline).set(0)

    def record_in(self, count: int) -> None:
        self.records_in.labels(self.pipeline).inc(count)

    def error(self, kind: str) -> None:
        """Count one error; ``kind`` is a short fixed word (``transient``, ``terminal``, ``lease_lost``…)."""
        self.errors.labels(self.pipeline, kind).inc()

    def committed(
        self, *, seconds: float, oldest_arrival_us: int, quarantined: int, duplicate: int, reason: str
    ) -> None:
        """Account one committed batch."""
        self.batches_committed.labels(self.pipeline).inc()
        self.batch_commit_seconds.labels(self.pipeline).observe(seconds)
        if oldest_arrival_us > 0:
            self.freshness.labels(self.pipeline).observe(max(0.0, time.time() - oldest_arrival_us / 1e6))
        if quarantined:
            self.rows_quarantined.labels(self.pipeline, reason).inc(quarantined)
        if duplicate:
            self.rows_duplicate.labels(self.pipeline).inc(duplicate)

    def set_leases(self, count: int) -> None:
        self.leases_held.labels(self.pipeline).set(count)

    def set_lag(self, shard: str, millis: float) -> None:
        self.millis_behind_latest.labels(self.pipeline, shard).set(millis)

    def set_checkpoint_age(self, shard: str, seconds: float) -> None:
        self.checkpoint_age.labels(self.pipeline, shard).set(seconds)

    def forget_shard(self, shard: str) -> None:
        """Drop the per-shard series of a shard this worker no longer holds."""
        for gauge in (self.millis_behind_latest, self.checkpoint_age):
            with contextlib.suppress(KeyError):
                gauge.remove(self.pipeline, shard)
