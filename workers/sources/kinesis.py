"""Kinesis source: a KCL-grade consumer in pure asyncio (leases in DynamoDB, no Java daemon).

One coordinator task discovers shards (every ``discover_every`` s and right after a shard ends), renews the
leases this worker holds (every ``lease_seconds / 3``), and takes / steals leases toward a fair share
(:func:`workers.sources.kinesis_leases.plan`). One consumer task per held shard reads it with GetRecords:

- start: the recorded pending range first (replayed as one ``whole`` batch, the same records, hence the same
  ``batch_id``), then AFTER_SEQUENCE_NUMBER of the checkpoint, or TRIM_HORIZON when there is none;
- ExpiredIterator: a fresh iterator after the last delivered record; throttling: backoff with jitter;
- adaptive polling: every ``busy_poll`` s (<= 5 GetRecords/s/shard) while behind, ``idle_poll`` s when idle;
- SHARD_END: once every delivered record is checkpointed, the checkpoint becomes SHARD_END and the lease is
  given up; children become eligible only when all their parents are at SHARD_END (parent before child).

When ``stopping`` (the process's stop event) is set, consumers stop fetching and no lease is taken any
more, while held leases keep being renewed until :meth:`close` releases them after the runner's drain.
Deliveries go through a bounded :class:`~workers.runtime.queue.DeliveryQueue`: a slow sink stops fetching.
When a lease is lost (renewal, ``begin`` or ``settle`` refused by the conditional write), the shard's queued
deliveries are purged and a ``revoked`` delivery tells the runner to drop what it buffered; the shard is not
taken again before the runner has seen that revocation, so no record of an old ownership is ever begun
under a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.errors import TransientError, classify
from workers.runtime.backoff import Backoff
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.queue import DeliveryQueue
from workers.runtime.types import Batch, Delivery, LeaseLostError
from workers.sources.kinesis_leases import SHARD_END, Lease, LeaseTable, plan
from workers.sources.kinesis_reader import ShardReader, to_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KinesisConfig:
    lease_seconds: float = 10.0
    discover_every: float = 10.0
    max_records_per_call: int = 10_000
    busy_poll: float = 0.2
    idle_poll: float = 1.0
    queue_records: int = 100_000
    queue_bytes: int = 64 * 1024 * 1024


@dataclass(slots=True)
class _Held:
    """A lease this worker holds, and its consumer's progress in this ownership."""

    lease: Lease
    delivered_last: str | None  # last position put in the queue (starts at the checkpoint)
    committed_last: str | None  # last checkpointed position
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None
    reached_end: bool = False
    ended: bool = False
    checkpointed_at: float = field(default_factory=time.monotonic)


class SourceContext(Protocol):
    """What :func:`build_source` reads (``workers.pipelines.registry.PipelineContext`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def settings(self) -> Any: ...  # common.settings.WorkerSettings
    @property
    def clients(self) -> Any: ...  # .kinesis and .dynamodb aiobotocore clients
    @property
    def metrics(self) -> WorkerMetrics: ...
    @property
    def stopping(self) -> asyncio.Event: ...


async def build_source(ctx: SourceContext, *, stream: str | None = None) -> KinesisSource:
    """The Kinesis source of ``ctx.name`` on ``stream`` (default ``VITALSTREAM_STREAM``), leases in
    ``VITALSTREAM_LEASE_TABLE`` with ``VITALSTREAM_LEASE_SECONDS``; discovery every lease period (<= 10 s)."""
    lease = float(ctx.settings.lease_seconds)
    return KinesisSource(
        ctx.clients.kinesis,
        ctx.clients.dynamodb,
        stream=stream or str(ctx.settings.stream),
        lease_table=str(ctx.settings.lease_table),
        pipeline=ctx.name,
        metrics=ctx.metrics,
        worker_id=ctx.worker_id,
        config=KinesisConfig(lease_seconds=lease, discover_every=max(1.0, min(10.0, lease))),
        stopping=ctx.stopping,
    )


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class KinesisSource:
    """:class:`~workers.runtime.types.Source` over one Kinesis stream, shared by the pipeline's workers."""

    def __init__(
        self,
        kinesis: Any,
        dynamodb: Any,
        *,
        stream: str,
        lease_table: str,
        pipeline: str,
        metrics: WorkerMetrics,
        worker_id: str | None = None,
        config: KinesisConfig | None = None,
        backoff: Backoff | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.kinesis = kinesis
        self.stopping = stopping or asyncio.Event()  # set: stop fetching and taking leases (drain)
        self.stream = stream
        self.pipeline = pipeline
        self.metrics = metrics
        self.worker_id = worker_id or default_worker_id()
        self.config = config or KinesisConfig()
        self.backoff = backoff or Backoff(base=0.2, cap=5.0)
        self.table = LeaseTable(dynamodb, lease_table, pipeline=pipeline, stream=stream, worker_id=self.worker_id)
        self.queue = DeliveryQueue(self.config.queue_records, self.config.queue_bytes)
        self.reader = ShardReader(
            kinesis, stream, metrics, limit=self.config.max_records_per_call, backoff=self.backoff
        )
        self._held: dict[str, _Held] = {}
        self._revoking: set[str] = set()  # dropped shards whose revocation the runner has not polled yet
        self._observed: dict[str, tuple[int, float]] = {}  # lease key -> (counter, monotonic first seen)
        self._stream_shards: set[str] = set()
        self._wake = asyncio.Event()
        self._coordinator: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def held_shards(self) -> list[str]:
        return sorted(self._held)

    # -- Source protocol --------------------------------------------------------------------------------

    async def poll(self, max_wait: float) -> Sequence[Delivery]:
        if self._coordinator is None and not self._closed:
            self._coordinator = asyncio.create_task(self._coordinate(), name=f"kinesis-coordinator-{self.stream}")
        if self._coordinator is not None and self._coordinator.done() and not self._coordinator.cancelled():
            self._coordinator.result()  # surface a crash of the coordinator
        deliveries = await self.queue.get_all(max_wait)
        for delivery in deliveries:
            if delivery.revoked:
                self._revoking.discard(delivery.source_id)
        return deliveries

    async def begin(self, batch: Batch) -> None:
        held = self._owned(batch.source_id)
        try:
            async with held.lock:
                await self.table.begin(held.lease, batch.first_position, batch.last_position)
        except LeaseLostError:
            await self._drop(batch.source_id, release=False)
            raise

    async def settle(self, batch: Batch, *, committed: bool) -> None:
        if not committed:
            if batch.source_id in self._held:
                await self._drop(batch.source_id, release=True)
            return
        held = self._owned(batch.source_id)
        try:
            async with held.lock:
                end = held.reached_end and batch.last_position == held.delivered_last
                held.lease = await self.table.checkpoint(held.lease, batch.last_position, shard_end=end)
                held.committed_last = batch.last_position
                held.checkpointed_at = time.monotonic()
        except LeaseLostError:
            await self._drop(batch.source_id, release=False)
            raise
        if end:
            self._finish(held)

    async def close(self) -> None:
        """Stop the coordinator and consumers, then release every held lease (checkpoints stay)."""
        self._closed = True
        tasks = [self._coordinator] if self._coordinator else []
        tasks += [held.task for held in self._held.values() if held.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        held_leases = list(self._held.values())
        self._held.clear()
        results = await asyncio.gather(*(self._release(held) for held in held_leases), return_exceptions=True)
        for held, result in zip(held_leases, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "lease release failed", extra={"shard_id": held.lease.shard, "error_type": type(result).__name__}
                )
        self.metrics.set_leases(0)
        log.info("leases released", extra={"pipeline": self.pipeline, "count": len(held_leases)})

    # -- coordination ------------------------------------------------------------------------------------

    async def _coordinate(self) -> None:
        last_discover = last_balance = float("-inf")
        tick = self.config.lease_seconds / 3
        while True:
            now = time.monotonic()
            try:
                if self._wake.is_set() or now - last_discover >= self.config.discover_every:
                    self._wake.clear()
                    await self._discover()
                    last_discover, last_balance = now, float("-inf")
                await self._renew_all()
                if now - last_balance >= self.config.lease_seconds / 2:
                    await self._balance()
                    last_balance = now
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = "transient" if classify(exc) is TransientError else "terminal"
                self.metrics.error(f"coordinator_{kind}")
                log.warning(
                    "lease coordination failed", extra={"pipeline": self.pipeline, "error_type": type(exc).__name__}
                )
            self._report()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)

    async def _discover(self) -> None:
        """Create a free lease for every shard of the stream that has none (parents first)."""
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            page = await self.kinesis.list_shards(**kwargs)
            shards += page["Shards"]
            if not page.get("NextToken"):
                break
            kwargs = {"NextToken": page["NextToken"]}
        self._stream_shards = {shard["ShardId"] for shard in shards}
        known = {lease.shard for lease in await self.table.list()}
        for shard in shards:  # ListShards returns parents before their children
            if shard["ShardId"] not in known:
                parents = [shard[k] for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k)]
                if await self.table.create(shard["ShardId"], parents):
                    log.info("shard discovered", extra={"pipeline": self.pipeline, "shard_id": shard["ShardId"]})

    async def _renew_all(self) -> None:
        async def renew(held: _Held) -> str | None:
            async with held.lock:
                if held.ended:
                    return None
                try:
                    held.lease = await self.table.renew(held.lease)
                except LeaseLostError:
                    return held.lease.shard
            return None

        lost = await asyncio.gather(*(renew(held) for held in list(self._held.values())))
        for shard in filter(None, lost):
            self.metrics.error("lease_lost")
            log.warning("lease lost to another worker", extra={"pipeline": self.pipeline, "shard_id": shard})
            await self._drop(shard, release=False)

    async def _balance(self) -> None:
        leases = await self.table.list()
        now = time.monotonic()
        expired: set[str] = set()
        for lease in leases:
            seen = self._observed.get(lease.key)
            if seen is None or seen[0] != lease.counter:
                self._observed[lease.key] = (lease.counter, now)
            elif lease.owner and now - seen[1] >= self.config.lease_seconds:
                expired.add(lease.key)
        if self.stopping.is_set():
            return
        decision = plan(leases, self.worker_id, expired, self._stream_shards)
        wanted = [*decision.take, *([decision.steal] if decision.steal else [])]
        for lease in wanted:
            if lease.shard in self._held or lease.shard in self._revoking or self._closed or self.stopping.is_set():
                continue
            try:
                taken = await self.table.take(lease)
            except LeaseLostError:
                continue  # somebody else was faster
            how = "stolen" if lease is decision.steal else ("expired" if lease.owner else "free")
            log.info("lease taken", extra={"pipeline": self.pipeline, "shard_id": lease.shard, "reason": how})
            self._start(taken)

    def _report(self) -> None:
        self.metrics.set_leases(len(self._held))
        now = time.monotonic()
        for shard, held in self._held.items():
            behind = held.delivered_last != held.committed_last
            self.metrics.set_checkpoint_age(shard, now - held.checkpointed_at if behind else 0.0)

    # -- ownership changes -------------------------------------------------------------------------------

    def _owned(self, shard: str) -> _Held:
        held = self._held.get(shard)
        if held is None or held.ended:
            raise LeaseLostError(shard)
        return held

    def _start(self, lease: Lease) -> None:
        held = _Held(lease=lease, delivered_last=lease.checkpoint, committed_last=lease.checkpoint)
        self._held[lease.shard] = held
        held.task = asyncio.create_task(self._consume(held), name=f"kinesis-{lease.shard}")
        self.metrics.set_leases(len(self._held))

    def _finish(self, held: _Held) -> None:
        """The shard is checkpointed at SHARD_END (and the lease given up): children may start."""
        held.ended = True
        self._held.pop(held.lease.shard, None)
        self.metrics.forget_shard(held.lease.shard)
        self.metrics.set_leases(len(self._held))
        log.info("shard finished", extra={"pipeline": self.pipeline, "shard_id": held.lease.shard})
        self._wake.set()

    async def _drop(self, shard: str, *, release: bool) -> None:
        """Stop consuming ``shard``, purge its queued records, tell the runner; optionally give the lease up."""
        held = self._held.pop(shard, None)
        if held is None:
            return
        if held.task is not None and held.task is not asyncio.current_task():
            held.task.cancel()
            await asyncio.gather(held.task, return_exceptions=True)
        await self.queue.purge(shard)
        self._revoking.add(shard)
        await self.queue.put_control(Delivery(shard, revoked=True))
        self.metrics.forget_shard(shard)
        self.metrics.set_leases(len(self._held))
        if release:
            try:
                await self._release(held)
            except Exception as exc:
                log.warning("lease release failed", extra={"shard_id": shard, "error_type": type(exc).__name__})

    async def _release(self, held: _Held) -> None:
        async with held.lock:
            if not held.ended:
                with contextlib.suppress(LeaseLostError):
                    await self.table.release(held.lease)

    # -- consuming one shard -----------------------------------------------------------------------------

    async def _consume(self, held: _Held) -> None:
        shard = held.lease.shard
        reader = self.reader
        try:
            if held.lease.pending_first and held.lease.pending_last:
                records = await reader.read_range(
                    shard, held.lease.pending_first, held.lease.pending_last, self.config.busy_poll
                )
                if records:
                    log.info("replaying pending batch", extra={"shard_id": shard, "records": len(records)})
                    await self.queue.put(Delivery(shard, tuple(records), whole=True, replay=True))
                    held.delivered_last = records[-1].position
            iterator: str | None = await reader.iterator(shard, held.delivered_last)
            while iterator and not self.stopping.is_set():
                page = await reader.page(shard, iterator, held.delivered_last)
                behind = int(page.get("MillisBehindLatest", 0) or 0)
                self.metrics.set_lag(shard, behind)
                records = [to_record(raw) for raw in page.get("Records", [])]
                if records:
                    await self.queue.put(Delivery(shard, tuple(records)))
                    held.delivered_last = records[-1].position
                iterator = page.get("NextShardIterator")
                if not iterator:
                    await self._reached_end(held)
                    return
                await asyncio.sleep(self.config.busy_poll if records or behind > 0 else self.config.idle_poll)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.error("consumer")
            log.error(
                "shard consumer failed: releasing lease", extra={"shard_id": shard, "error_type": type(exc).__name__}
            )
            await self._drop(shard, release=True)

    async def _reached_end(self, held: _Held) -> None:
        held.reached_end = True
        await self.queue.put(Delivery(held.lease.shard, end=True))
        async with held.lock:
            if held.ended or held.delivered_last != held.committed_last:
                return  # settle() of the last delivered batch will write SHARD_END
            held.lease = await self.table.checkpoint(held.lease, SHARD_END, shard_end=True)
        self._finish(held)
