"""The batching Kinesis producer: many requests' records coalesced into PutRecords calls.

Contract:
- :meth:`Producer.put` returns once every record it was given is acknowledged by the sink, or raises
  a :class:`ProducerError` (→ 503 + ``Retry-After``): :class:`ProducerBusy` at once when more than
  ``max_inflight`` records would be waiting (bounded memory), :class:`ProducerUnavailable` when the
  request's retry budget is spent or the stream refuses the data for good, :class:`ProducerClosed`
  during shutdown. On failure no record of the request is reported written; records not yet sent are
  dropped (one request = one record per device, so a single-device request is all or nothing).
- Records of concurrent requests are coalesced into calls of at most 500 records and 5 MiB. When no
  call is in flight (or a batch is full) it leaves at the end of the current event-loop turn; otherwise
  it lingers up to ``linger`` seconds to fill. At most ``max_calls`` calls run concurrently; records
  wait in memory for a free call, bounded by ``max_inflight``.
- Failed entries of a partial failure (and all entries of a failed transient call) are retried alone,
  after exponential backoff with full jitter, while the request's budget (``retry_budget`` seconds
  from :meth:`put`) lasts. Entries that succeeded are never sent again.
- :meth:`close` stops intake and drains what is pending (bounded by ``timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from common.errors import TransientError, classify
from service.metrics import GatewayMetrics
from service.normalise import Record

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
THROTTLED = "ProvisionedThroughputExceededException"


class Sink(Protocol):
    """Where batches go: Kinesis PutRecords, or a no-op for benchmarks."""

    async def put_records(self, records: Sequence[Record]) -> list[str | None]:
        """Write ``records``; per record ``None`` if written, else its error code. Raises if the call failed."""


class KinesisSink:
    """PutRecords on one stream through an aiobotocore Kinesis client."""

    def __init__(self, kinesis: Any, stream: str) -> None:
        self._kinesis = kinesis
        self._stream = stream

    async def put_records(self, records: Sequence[Record]) -> list[str | None]:
        entries = [{"Data": record.data, "PartitionKey": record.partition_key} for record in records]
        response = await self._kinesis.put_records(StreamName=self._stream, Records=entries)
        results = response.get("Records", [])
        if len(results) != len(records):
            raise TransientError("PutRecords answered a different number of entries")
        if not response.get("FailedRecordCount"):
            return [None] * len(records)
        return [result.get("ErrorCode") for result in results]


class NullSink:
    """Accepts everything at once, writes nothing (the benchmark's sink)."""

    async def put_records(self, records: Sequence[Record]) -> list[str | None]:
        return [None] * len(records)


class ProducerError(TransientError):
    """The stream cannot take the data now; ``retry_after`` seconds is a fair wait."""

    retry_after = 1


class ProducerBusy(ProducerError):
    """Too many records are waiting already."""


class ProducerUnavailable(ProducerError):
    """The retry budget is spent or the stream refused the records."""

    retry_after = 2


class ProducerClosed(ProducerError):
    """The gateway is shutting down."""


class _Request:
    __slots__ = ("deadline", "failed", "future", "remaining")

    def __init__(self, future: asyncio.Future[None], remaining: int, deadline: float) -> None:
        self.future = future
        self.remaining = remaining
        self.deadline = deadline
        self.failed = False


class _Entry:
    __slots__ = ("attempt", "record", "request", "size")

    def __init__(self, record: Record, request: _Request) -> None:
        self.record = record
        self.request = request
        self.attempt = 0
        self.size = len(record.data) + len(record.partition_key.encode())


class Producer:
    """Coalesces records into PutRecords calls; see the module docstring for the contract."""

    def __init__(
        self,
        sink: Sink,
        metrics: GatewayMetrics,
        *,
        linger: float = 0.005,
        max_inflight: int = 20_000,
        retry_budget: float = 3.0,
        max_calls: int = 16,
        base_backoff: float = 0.05,
        max_backoff: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._linger = linger
        self._max_inflight = max_inflight
        self._retry_budget = retry_budget
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._jitter = jitter
        self._ready: deque[_Entry] = deque()
        self._ready_bytes = 0
        self._inflight = 0
        self._calls = 0
        self._max_calls = max_calls
        self._flush_handle: asyncio.Handle | None = None
        self._flush_soon = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._requests: set[_Request] = set()
        self._closed = False
        metrics.queue_depth.set_function(lambda: self._inflight)  # read at scrape time, not per request

    @property
    def inflight(self) -> int:
        """Records accepted by :meth:`put` and not yet acknowledged or failed."""
        return self._inflight

    def start(self) -> None:
        """Kept for symmetry with :meth:`close`; batches are scheduled from :meth:`put` on the running loop."""

    async def put(self, records: Sequence[Record]) -> None:
        """Write ``records`` and wait for their acknowledgement; raises ``ProducerError``."""
        if self._closed:
            raise ProducerClosed("the gateway is shutting down")
        count = len(records)
        if self._inflight + count > self._max_inflight:
            raise ProducerBusy("too many records waiting for the stream")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        request = _Request(future, count, self._clock() + self._retry_budget)
        self._requests.add(request)
        self._inflight += count
        self._idle.clear()
        for record in records:
            self._enqueue(_Entry(record, request))
        try:
            await future
        finally:
            self._requests.discard(request)

    async def close(self, grace: float) -> None:
        """Refuse new records, drain pending ones for up to ``grace`` s, then fail what is left."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for request in list(self._requests):
            self._fail(request, ProducerClosed("the gateway shut down before the records were written"))
        self._ready.clear()
        self._ready_bytes = 0
        self._done(self._inflight)

    # -- batching -------------------------------------------------------------------------------

    def _enqueue(self, entry: _Entry) -> None:
        self._ready.append(entry)
        self._ready_bytes += entry.size
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Flush at the end of this loop turn when idle or full; else after ``linger`` (calls in flight)."""
        soon = not self._calls or len(self._ready) >= MAX_BATCH_RECORDS or self._ready_bytes >= MAX_BATCH_BYTES
        handle = self._flush_handle
        if handle is not None:
            if self._flush_soon or not soon:
                return
            handle.cancel()
        loop = asyncio.get_running_loop()
        self._flush_soon = soon
        self._flush_handle = loop.call_soon(self._flush) if soon else loop.call_later(self._linger, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        loop = asyncio.get_running_loop()
        while self._ready and self._calls < self._max_calls:
            batch = self._take_batch()
            if not batch:
                continue
            self._calls += 1
            task = loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take_batch(self) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        while self._ready and len(batch) < MAX_BATCH_RECORDS:
            entry = self._ready[0]
            if batch and size + entry.size > MAX_BATCH_BYTES:
                break
            self._ready.popleft()
            self._ready_bytes -= entry.size
            if entry.request.failed:  # its request already got a 503: do not write it
                self._done(1)
                continue
            batch.append(entry)
            size += entry.size
        return batch

    async def _send(self, batch: list[_Entry]) -> None:
        started = time.perf_counter()
        try:
            codes = await self._sink.put_records([entry.record for entry in batch])
        except Exception as exc:
            if classify(exc) is not TransientError:
                for entry in batch:
                    self._fail(entry.request, ProducerUnavailable("the stream refused the records"))
                self._done(len(batch))
                return
            codes = [_error_code(exc) or type(exc).__name__] * len(batch)
        finally:
            self._metrics.put_latency.observe(time.perf_counter() - started)
            self._calls -= 1
            if self._ready:
                self._schedule_flush()
        throttled = 0
        finished = 0
        for entry, result in zip(batch, codes, strict=True):
            if result is None:
                finished += 1
                request = entry.request
                request.remaining -= 1
                if request.remaining == 0 and not request.failed and not request.future.done():
                    request.future.set_result(None)
            else:
                throttled += result == THROTTLED
                if not self._retry_later(entry):
                    finished += 1
        if throttled:
            self._metrics.put_throttles.inc(throttled)
        self._done(finished)

    def _retry_later(self, entry: _Entry) -> bool:
        """Schedule ``entry`` again within its request's budget; False (request failed) when spent."""
        request = entry.request
        if request.failed:
            return False
        entry.attempt += 1
        delay = self._jitter() * min(self._max_backoff, self._base_backoff * 2**entry.attempt)
        if self._clock() + delay > request.deadline:
            self._fail(request, ProducerUnavailable("the stream did not take the records within the retry budget"))
            return False
        self._metrics.put_retries.inc()
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def fire() -> None:
            if timer is not None:
                self._timers.discard(timer)
            if request.failed:
                self._done(1)
            else:
                self._enqueue(entry)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)
        return True

    def _fail(self, request: _Request, error: ProducerError) -> None:
        if request.failed:
            return
        request.failed = True
        if not request.future.done():
            request.future.set_exception(error)

    def _done(self, count: int) -> None:
        if not count:
            return
        self._inflight -= count
        if self._inflight == 0:
            self._idle.set()


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
