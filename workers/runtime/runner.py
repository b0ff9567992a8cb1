"""The runner: source -> flush policy -> handler -> checkpoint, with retries, backpressure and graceful stop.

Per batch, strictly in this order (DESIGN.md "Exactly-once")::

    source.begin(batch)                  # pending range recorded (fenced) before any side effect
    handler.handle(batch)                # durable and idempotent per batch_id when it returns
    source.settle(batch, committed=True) # checkpoint / delete message, only after the commit

Transient errors (``common.errors.classify``) are retried with exponential backoff and full jitter, the same
batch each time. A terminal error from ``handle`` routes the batch to ``handler.quarantine`` and the batch goes
on. When retries outlast ``give_up_after`` seconds (or the shutdown deadline), the batch is settled with
``committed=False`` (the source makes it available again: lease released / message visible), never skipped.
Batches are handled one at a time, so a partition's batches are checkpointed in order and a slow handler
stops the runner from polling: the source's bounded buffer then stops fetching (backpressure). Buffered
memory is bounded by ``max_buffered_bytes``: above it, the largest partition is flushed early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from common.errors import TransientError, classify
from workers.runtime.backoff import Backoff
from workers.runtime.flush import Buffers, FlushPolicy, FlushReason
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import Batch, BatchHandler, BatchResult, Delivery, LeaseLostError, Source, make_batch

log = logging.getLogger(__name__)
T = TypeVar("T")


class GiveUpError(Exception):
    """Retries of one step ran out of budget (or of shutdown grace)."""


class Runner:
    """Runs one pipeline: ``await Runner(...).run(stop_event)`` returns after a graceful drain."""

    def __init__(
        self,
        source: Source,
        handler: BatchHandler,
        policy: FlushPolicy,
        metrics: WorkerMetrics,
        *,
        pipeline: str,
        backoff: Backoff | None = None,
        grace_seconds: float = 25.0,
        give_up_after: float | None = 120.0,
        max_buffered_bytes: int | None = None,
        poll_interval: float = 1.0,
        stall_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.handler = handler
        self.policy = policy
        self.metrics = metrics
        self.pipeline = pipeline
        self.backoff = backoff or Backoff(base=0.2, cap=20.0)
        self.grace_seconds = grace_seconds
        self.give_up_after = give_up_after
        self.max_buffered_bytes = max_buffered_bytes or 2 * policy.max_bytes
        self.poll_interval = poll_interval
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.buffers = Buffers(policy)
        self._deadline: float | None = None  # set when a stop is requested
        self._heartbeat = clock()
        self._failed = False

    def healthy(self) -> bool:
        """For ``/healthz``: the loop has not crashed and made progress within ``stall_seconds``."""
        return not self._failed and self.clock() - self._heartbeat < self.stall_seconds

    async def run(self, stop_event: asyncio.Event) -> None:
        """Poll and process until ``stop_event`` is set, then flush, checkpoint and close the source.

        The drain is bounded by ``grace_seconds`` from the moment the stop is noticed (minus a reserve for
        ``source.close()``, which releases leases). Records not committed by then are not checkpointed:
        the next owner replays them.
        """
        try:
            while not stop_event.is_set():
                await self._step(stop_event)
            reserve = min(3.0, self.grace_seconds * 0.2)
            self._deadline = self.clock() + max(0.0, self.grace_seconds - reserve)
            await self._drain()
        except BaseException:
            self._failed = True
            raise
        finally:
            if self._deadline is None:
                self._deadline = self.clock() + self.grace_seconds
            try:
                await asyncio.wait_for(self.source.close(), timeout=max(1.0, self._remaining() + 3.0))
            except (TimeoutError, Exception):
                log.exception("source close failed", extra={"pipeline": self.pipeline})

    # -- loop -------------------------------------------------------------------------------------------

    async def _step(self, stop_event: asyncio.Event) -> None:
        self._heartbeat = self.clock()
        while self.buffers.total_bytes() > self.max_buffered_bytes:
            largest = self.buffers.largest()
            if largest is None:
                break
            await self._flush(largest, FlushReason.BYTES, everything=False)
        timeout = self.poll_interval
        next_due = self.buffers.next_due()
        if next_due is not None:
            timeout = min(timeout, max(0.0, next_due - self.clock()))
        deliveries = await self.source.poll(timeout)
        for delivery in deliveries:
            await self._accept(delivery)
        for source_id, reason in list(self.buffers.due(self.clock())):
            await self._flush(source_id, reason, everything=False)

    async def _accept(self, delivery: Delivery) -> None:
        source_id = delivery.source_id
        if delivery.revoked:
            dropped = self.buffers.drop(source_id)
            log.info("partition revoked", extra={"pipeline": self.pipeline, "shard_id": source_id, "count": dropped})
            return
        if delivery.records:
            self.metrics.record_in(len(delivery.records))
        if delivery.whole or delivery.replay:
            await self._flush(source_id, FlushReason.END, everything=True)
            if delivery.records:
                await self._process(make_batch(self.pipeline, source_id, delivery.records, replay=delivery.replay))
            return
        self.buffers.add(source_id, delivery.records, self.clock())
        if delivery.end:
            await self._flush(source_id, FlushReason.END, everything=True)

    async def _drain(self) -> None:
        """Flush every partition (stop requested): what fits in the grace period is committed."""
        for source_id in list(self.buffers.parts):
            if self._remaining() <= 0:
                break
            await self._flush(source_id, FlushReason.END, everything=True)

    async def _flush(self, source_id: str, reason: FlushReason, *, everything: bool) -> None:
        """Turn buffered records of ``source_id`` into batches (one, or until empty) and process them."""
        while source_id in self.buffers.parts:
            records = self.buffers.take(source_id, self.clock())
            if not records:
                return
            log.debug("flush", extra={"pipeline": self.pipeline, "shard_id": source_id, "reason": reason.value})
            await self._process(make_batch(self.pipeline, source_id, records))
            if not everything:
                return

    # -- one batch --------------------------------------------------------------------------------------

    async def _process(self, batch: Batch) -> None:
        started = self.clock()
        ids = {"pipeline": self.pipeline, "shard_id": batch.source_id, "batch_id": batch.batch_id}
        try:
            await self._retry("begin", lambda: self.source.begin(batch))
            result = await self._handle(batch)
            await self._retry("settle", lambda: self.source.settle(batch, committed=True))
        except LeaseLostError:
            self.metrics.error("lease_lost")
            dropped = self.buffers.drop(batch.source_id)
            log.warning("lease lost: batch not checkpointed", extra={**ids, "count": dropped})
            return
        except GiveUpError:
            self.metrics.error("gave_up")
            self.buffers.drop(batch.source_id)
            log.error("gave up on batch: released for a later retry", extra={**ids, "records": len(batch.records)})
            try:
                await asyncio.wait_for(self.source.settle(batch, committed=False), timeout=10)
            except Exception:
                log.exception("release after give-up failed", extra=ids)
            return
        oldest = min((record.arrived_at_us for record in batch.records), default=0)
        self.metrics.committed(
            seconds=self.clock() - started,
            oldest_arrival_us=oldest,
            quarantined=result[1],
            duplicate=result[0].rows_duplicate,
            reason="batch_error",
        )
        log.info(
            "batch committed",
            extra={
                **ids,
                "rows_in": result[0].rows_in,
                "rows_loaded": result[0].rows_loaded,
                "rows_quarantined": result[0].rows_quarantined,
                "rows_duplicate": result[0].rows_duplicate,
                "duration_ms": round((self.clock() - started) * 1000, 1),
            },
        )

    async def _handle(self, batch: Batch) -> tuple[BatchResult, int]:
        """``handle`` with retries; on a terminal error ``quarantine``. Returns the result and the number of
        rows quarantined because of a batch error (the handler counts its own per-reason quarantines)."""
        try:
            return await self._retry("handle", lambda: self.handler.handle(batch)), 0
        except (GiveUpError, LeaseLostError):
            raise
        except Exception as exc:
            error = exc
            self.metrics.error("terminal")
            log.error(
                "terminal error: quarantining batch",
                extra={"pipeline": self.pipeline, "batch_id": batch.batch_id, "error_type": type(exc).__name__},
            )
            result = await self._retry("quarantine", lambda: self.handler.quarantine(batch, error))
            return result, result.rows_quarantined

    async def _retry(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` until it succeeds; retry transient errors with backoff; re-raise terminal ones."""
        started = self.clock()
        attempt = 0
        while True:
            try:
                return await call()
            except (LeaseLostError, GiveUpError, asyncio.CancelledError):
                raise
            except Exception as exc:
                if classify(exc) is not TransientError:
                    raise
                self.metrics.error("transient")
                delay = self.backoff.delay(attempt)
                attempt += 1
                self._heartbeat = self.clock()
                spent = self.clock() - started
                if (self.give_up_after is not None and spent + delay > self.give_up_after) or (
                    self._deadline is not None and self.clock() + delay > self._deadline
                ):
                    raise GiveUpError(step) from exc
                log.warning(
                    "transient error, retrying",
                    extra={
                        "pipeline": self.pipeline,
                        "component": step,
                        "attempt": attempt,
                        "error_type": type(exc).__name__,
                    },
                )
                await asyncio.sleep(delay)

    def _remaining(self) -> float:
        return float("inf") if self._deadline is None else self._deadline - self.clock()
