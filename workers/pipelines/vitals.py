"""The vitals pipeline: decode -> dedupe -> plausibility -> spikes -> S3 zones -> warehouse, per batch.

Order of effects for a batch (each step idempotent, keys derived from ``batch_id``)::

    raw archive -> [audited already? rewrite processed/quarantine from the warehouse rows, done]
    -> context (recent rows of the batch's series, pending ones) -> stages
    -> processed + quarantine + pending Parquet, COPY manifest -> warehouse load (one transaction)
    -> if the load found duplicates the stages could not see: rewrite the affected Parquet and manifest

So the processed zone ends up holding exactly the rows the batch inserted into ``fact_vitals``, whether the
batch ran once, was replayed before its commit, or after it. Held readings (spike decisions waiting for the
next reading) live in ``vitals_pending``, written in the batch's transaction; a periodic task releases the
held readings of quiet shards once the hold limit passed (as a batch ``hold-<batch that held them>``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from common.settings import WorkerSettings
from schemas.arrow import KEY_COLUMNS
from workers.pipelines.registry import PipelineContext
from workers.pipelines.vitals_alerts import AlertMetrics, AlertOutbox, AlertPublisher
from workers.runtime.types import Batch, BatchHandler, BatchResult, Source
from workers.sinks.glue_catalog import GlueCatalog
from workers.sinks.manifest_s3 import ManifestEntry, ManifestS3
from workers.sinks.parquet_s3 import ParquetS3, WrittenObject
from workers.sinks.raw_archive_s3 import RawArchiveS3
from workers.stages.check_plausibility import check_plausibility
from workers.stages.decode import decode
from workers.stages.dedupe import KeyWindow, dedupe
from workers.stages.remove_spikes import SpikeConfig, remove_spikes
from workers.stages.shape import drop_keys, series_table, to_pending, to_processed, to_quarantined
from workers.warehouse.open import open_loader
from workers.warehouse.vitals_types import LoadOutcome, LoadTables, WarehouseLoader

__all__ = [
    "PIPELINE",
    "VitalsConfig",
    "VitalsHandler",
    "build",
    "build_handler",
    "open_alerts",
    "open_outbox",
    "release_due",
]

PIPELINE = "vitals"
ORPHAN_GRACE_US = 10_000_000
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VitalsConfig:
    spike: SpikeConfig = field(default_factory=SpikeConfig)
    context_per_series: int = 16
    context_lookback_us: int = 6 * 3600 * 1_000_000
    window_keys: int = 200_000
    release_interval_s: float = 5.0
    active_source_s: float = 120.0


def _keys(*tables: pa.Table) -> pa.Table:
    parts = [t.select(list(KEY_COLUMNS)) for t in tables if t.num_rows]
    return pa.concat_tables(parts) if parts else tables[0].select(list(KEY_COLUMNS)).slice(0, 0)


class VitalsHandler(BatchHandler):
    """The vitals :class:`BatchHandler`: idempotent per ``batch_id``, durable when ``handle`` returns."""

    def __init__(
        self,
        loader: WarehouseLoader,
        raw: RawArchiveS3,
        parquet: ParquetS3,
        manifests: ManifestS3,
        config: VitalsConfig | None = None,
        alerts: AlertPublisher | None = None,
        catalog: GlueCatalog | None = None,
    ) -> None:
        self.loader = loader
        self.alerts = alerts
        self.catalog = catalog
        self.raw = raw
        self.parquet = parquet
        self.manifests = manifests
        self.config = config or VitalsConfig()
        self._windows: dict[str, KeyWindow] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._active: dict[str, float] = {}

    def _lock(self, source_id: str) -> asyncio.Lock:
        return self._locks.setdefault(source_id, asyncio.Lock())

    def _window(self, source_id: str) -> KeyWindow:
        return self._windows.setdefault(source_id, KeyWindow(self.config.window_keys))

    async def handle(self, batch: Batch) -> BatchResult:
        started = time.monotonic()
        async with self._lock(batch.source_id):
            self._active[batch.source_id] = time.monotonic()
            if batch.replay:
                self._window(batch.source_id).clear()
            await self.raw.write(batch.batch_id, [(r.data, r.arrived_at_us) for r in batch.records])
            audited = await self.loader.audited(batch.batch_id)
            if audited is not None:
                await self._recover(batch.batch_id)
                outcome = audited
            else:
                # CPU-bound work runs off the event loop, so lease renewals and /healthz stay on time.
                decoded = await asyncio.to_thread(
                    decode, [r.data for r in batch.records], [r.position for r in batch.records]
                )
                for bad in decoded.rejected:
                    position = batch.records[bad.index].position
                    extra = {"batch_id": batch.batch_id, "reason": bad.reason, "sequence_number": position}
                    log.warning("record rejected", extra=extra)
                now_us = max(r.arrived_at_us for r in batch.records)
                outcome = await self._process(batch.batch_id, batch.source_id, decoded.readings, now_us)
        log.info(
            "batch committed",
            extra={"batch_id": batch.batch_id, "shard_id": batch.source_id, "rows_in": outcome.rows_in,
                   "rows_loaded": outcome.rows_loaded, "rows_quarantined": outcome.rows_quarantined,
                   "rows_duplicate": outcome.rows_duplicate,
                   "duration_ms": round((time.monotonic() - started) * 1000, 1)},
        )  # fmt: skip
        return BatchResult(outcome.rows_in, outcome.rows_loaded, outcome.rows_quarantined, outcome.rows_duplicate)

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        """Archive the raw records and record the batch in ``batch_quarantine`` (error type only: no PHI)."""
        await self.raw.write(batch.batch_id, [(r.data, r.arrived_at_us) for r in batch.records])
        source_key = f"{batch.source_id}:{batch.first_position}-{batch.last_position}"
        await self.loader.record_failed_batch(PIPELINE, source_key, "batch_failed", type(error).__name__)
        return BatchResult(0, 0, 0, 0)

    async def _process(self, batch_id: str, source_id: str, readings: pa.Table, now_us: int) -> LoadOutcome:
        cfg = self.config
        series = series_table(readings, cfg.context_lookback_us)
        context = await self.loader.context(series, source_id, cfg.context_per_series)
        window = self._window(source_id)

        def stages() -> tuple[pa.Table, pa.Table, pa.Table, int]:
            deduped = dedupe(readings, pa.concat_tables([window.keys(), context.select(list(KEY_COLUMNS))]))
            plausible = check_plausibility(deduped.kept)
            spikes = remove_spikes(plausible.kept, context, now_us=now_us, config=cfg.spike)
            return (
                to_processed(spikes.accepted, batch_id),
                to_quarantined([plausible.rejected, spikes.quarantined], batch_id),
                to_pending(spikes.held, batch_id, source_id),
                deduped.rejected.num_rows,
            )

        clean, quarantined, pending, duplicates = await asyncio.to_thread(stages)
        outcome = await self._write_and_load(batch_id, clean, quarantined, pending, readings.num_rows, duplicates)
        window.add(_keys(clean, quarantined, pending))
        return outcome

    async def _write_and_load(
        self, batch_id: str, clean: pa.Table, quarantined: pa.Table, pending: pa.Table, rows_in: int, dups: int
    ) -> LoadOutcome:
        previous = await self.manifests.read(batch_id)
        written, q_written, p_written = await asyncio.gather(
            self.parquet.write_processed(batch_id, clean),
            self.parquet.write_quarantine(batch_id, quarantined),
            self.parquet.write_pending(batch_id, pending),
        )
        manifest_url = await self._publish(batch_id, written, previous)
        q_manifest = None
        if q_written:
            q_entries = [ManifestEntry(w.url, w.size) for w in q_written]
            q_manifest = await self.manifests.write_quarantine(batch_id, q_entries)
        tables = LoadTables(
            clean, quarantined, pending, rows_in=rows_in, duplicates_dropped=dups, manifest_url=manifest_url,
            quarantine_urls=tuple(w.url for w in q_written), pending_url=p_written.url if p_written else None,
            quarantine_manifest_url=q_manifest,
        )  # fmt: skip
        outcome = await self.loader.load(batch_id, PIPELINE, tables)
        if self.alerts is not None:
            await self.alerts.after_commit(outcome)  # NEWS2 alerts the commit raised (CONTRACT §9)
        lake = [*written, *q_written]
        if outcome.not_inserted.num_rows:
            kinds = outcome.not_inserted.column("kind")
            dropped_clean = outcome.not_inserted.filter(pc.equal(kinds, "clean"))
            dropped_q = outcome.not_inserted.filter(pc.equal(kinds, "quarantine"))
            if dropped_clean.num_rows:
                kept = drop_keys(clean, dropped_clean)
                rewritten = await self.parquet.write_processed(batch_id, kept)
                await self._publish(batch_id, rewritten, [ManifestEntry(w.url, w.size) for w in written])
                lake = [*rewritten, *(w for w in lake if w not in written)]
            if dropped_q.num_rows:
                kept_q = drop_keys(quarantined, dropped_q)
                q_rewritten = await self.parquet.write_quarantine(batch_id, kept_q)
                await self._delete_stale([w.url for w in q_written], q_rewritten)
                lake = [*(w for w in lake if w not in q_written), *q_rewritten]
        await self._catalogue(lake)
        return outcome

    async def _catalogue(self, written: Sequence[WrittenObject]) -> None:
        """After the commit: register the lake partitions of ``written`` (never fails the batch)."""
        if self.catalog is not None:
            await self.catalog.register(w.key for w in written)

    async def _publish(
        self, batch_id: str, written: Sequence[WrittenObject], previous: Sequence[ManifestEntry] | None
    ) -> str:
        """Write the batch's manifest for ``written``; delete objects a previous attempt listed but not these."""
        url = await self.manifests.write(batch_id, [ManifestEntry(w.url, w.size) for w in written])
        await self._delete_stale([e.url for e in previous or ()], written)
        return url

    async def _delete_stale(self, old_urls: Sequence[str], current: Sequence[WrittenObject]) -> None:
        keep = {w.url for w in current}
        prefix = f"s3://{self.parquet.bucket}/"
        stale = [u[len(prefix) :] for u in old_urls if u not in keep and u.startswith(prefix)]
        await self.parquet.delete(stale)

    async def _recover(self, batch_id: str) -> None:
        """The batch is audited: make its processed/quarantine objects equal to the rows it inserted."""
        clean, quarantined = await self.loader.batch_rows(batch_id)
        previous = await self.manifests.read(batch_id)
        written = await self.parquet.write_processed(batch_id, clean)
        q_written = await self.parquet.write_quarantine(batch_id, quarantined)
        await self._publish(batch_id, written, previous)
        await self._catalogue([*written, *q_written])

    async def release_held(self, source_id: str, now_us: int | None = None) -> int:
        """Release held readings of ``source_id`` past the hold limit, one batch per holding batch.

        A group (the rows one batch held) is released whole once its oldest row's hold expired, as batch
        ``hold-<holding batch_id>`` (deterministic: a retry after a crash overwrites the same objects).
        Returns the number of readings released.
        """
        now_us = now_us if now_us is not None else time.time_ns() // 1000
        released = 0
        async with self._lock(source_id):
            pending = await self.loader.pending(source_id)
            if pending.num_rows == 0:
                return 0
            groups = pending.group_by("batch_id", use_threads=False).aggregate([("received_at", "min")])
            holders = groups.column("batch_id").to_pylist()
            oldest = groups.column("received_at_min").cast(pa.int64()).to_pylist()
            for holder, oldest_us in sorted(zip(holders, oldest, strict=True)):
                if now_us - oldest_us < self.config.spike.hold_us:
                    continue
                release_id = f"hold-{holder}"[:128]
                rows = pending.filter(pc.equal(pending.column("batch_id"), holder))
                outcome = await self._write_and_load(
                    release_id, to_processed(rows, release_id), to_quarantined([], release_id),
                    to_pending(rows.slice(0, 0), release_id, source_id), 0, 0,
                )  # fmt: skip
                released += outcome.rows_loaded
        return released


def open_outbox(loader: WarehouseLoader) -> AlertOutbox:
    """The alert outbox in the warehouse ``loader`` writes to."""
    from workers.warehouse.postgres.news2 import PostgresAlertOutbox
    from workers.warehouse.postgres.vitals import PostgresLoader
    from workers.warehouse.redshift.news2 import RedshiftAlertOutbox
    from workers.warehouse.redshift.vitals import RedshiftDataLoader

    if isinstance(loader, PostgresLoader):
        return PostgresAlertOutbox(loader.pool)
    if isinstance(loader, RedshiftDataLoader):
        return RedshiftAlertOutbox(loader.statements)
    raise TypeError(f"no alert outbox for {type(loader).__name__}")


async def open_alerts(
    settings: WorkerSettings, loader: WarehouseLoader, stack: Any, metrics: AlertMetrics
) -> AlertPublisher:
    """The alert publisher: SNS ``VITALSTREAM_ALERT_TOPIC`` (unset: alerts stay in the outbox, with a warning)."""
    sink = None
    if settings.alert_topic:
        from common.aws import ClientFactory
        from workers.sinks.alerts_sns import AlertsSns

        sns = await stack.enter_async_context(ClientFactory(settings.aws_region).client("sns", max_attempts=2))
        sink = AlertsSns(sns, settings.alert_topic)
    else:
        log.warning("VITALSTREAM_ALERT_TOPIC is not set: deterioration alerts are not published")
    return AlertPublisher(open_outbox(loader), sink, metrics, interval_s=settings.alert_pass_seconds)


def build_handler(
    settings: WorkerSettings,
    s3: Any,
    loader: WarehouseLoader,
    alerts: AlertPublisher | None = None,
    glue: Any = None,
) -> VitalsHandler:
    kms = settings.kms_key_id
    catalog = GlueCatalog(glue, settings.glue_database, settings.bucket) if glue and settings.glue_database else None
    config = VitalsConfig(spike=SpikeConfig(hold_us=int(settings.spike_hold_seconds * 1_000_000)))
    return VitalsHandler(
        loader,
        RawArchiveS3(s3, settings.bucket, kms_key_id=kms),
        ParquetS3(s3, settings.bucket, kms_key_id=kms),
        ManifestS3(s3, settings.bucket, kms_key_id=kms),
        config,
        alerts,
        catalog,
    )


async def release_due(handler: VitalsHandler, owned: Iterable[str], now_us: int | None = None) -> int:
    """One pass of hold releases; returns the readings released.

    Sources considered: the shards this worker owns now (a shard that went quiet, or was taken over after a
    crash, still gets its decisions within the hold limit), the sources it handled recently, and any source
    whose held reading is long overdue (``2 * hold + 10 s``: an ended parent shard after resharding, a
    backfill source) — nobody owns those, and a release is keyed by the holding batch, so two workers
    releasing the same group load it once.
    """
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    horizon = time.monotonic() - handler.config.active_source_s
    recent = {source_id for source_id, seen in handler._active.items() if seen >= horizon}
    overdue = now_us - 2 * handler.config.spike.hold_us - ORPHAN_GRACE_US
    orphans = await handler.loader.stale_pending_sources(overdue)
    released = 0
    for source_id in sorted(recent | set(owned) | set(orphans)):
        try:
            released += await handler.release_held(source_id, now_us)
        except Exception:  # retried at the next pass
            log.exception("release of held readings failed", extra={"shard_id": source_id})
    return released


async def _release_loop(handler: VitalsHandler, owned: Callable[[], Iterable[str]]) -> None:
    while True:
        await asyncio.sleep(handler.config.release_interval_s)
        try:
            await release_due(handler, owned())
        except Exception:  # the warehouse may be briefly unreachable: next pass
            log.exception("hold release pass failed")


async def build(ctx: PipelineContext) -> tuple[Source, BatchHandler]:
    """Registry entry point: the Kinesis source and the vitals handler, resources on ``ctx.stack``."""
    from workers.sources.kinesis import build_source

    settings = ctx.settings
    loader = await open_loader(
        settings.warehouse_url.get_secret_value(), kind="vitals", settings=settings, s3=ctx.clients.s3
    )
    ctx.stack.push_async_callback(loader.close)
    alerts = await open_alerts(ctx.settings, loader, ctx.stack, AlertMetrics(ctx.registry, PIPELINE))
    handler = build_handler(ctx.settings, ctx.clients.s3, loader, alerts, ctx.clients.glue)
    source = await build_source(ctx)
    task = asyncio.create_task(_release_loop(handler, lambda: source.held_shards))
    alert_task = asyncio.create_task(alerts.run())

    async def _stop() -> None:
        task.cancel()
        alert_task.cancel()

    ctx.stack.push_async_callback(_stop)
    return source, handler
