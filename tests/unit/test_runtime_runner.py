"""The runner with an in-memory source and handler: ordering, retries, quarantine, fencing, stop. No I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from common.errors import TerminalError, TransientError
from common.metrics import new_registry
from workers.runtime.backoff import Backoff
from workers.runtime.flush import FlushPolicy
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.runner import Runner
from workers.runtime.types import Batch, BatchResult, Delivery, LeaseLostError, SourceRecord


def _records(n: int, start: int = 0) -> tuple[SourceRecord, ...]:
    return tuple(SourceRecord(f"r{i}".encode(), "k", str(i), 0) for i in range(start, start + n))


class FakeSource:
    def __init__(self, deliveries: list[Delivery], fenced: set[str] | None = None) -> None:
        self.pending = list(deliveries)
        self.fenced = fenced or set()
        self.log: list[tuple[str, str]] = []
        self.closed = False

    async def poll(self, max_wait: float) -> Sequence[Delivery]:
        if self.pending:
            return [self.pending.pop(0)]
        await asyncio.sleep(max_wait)
        return []

    async def begin(self, batch: Batch) -> None:
        if batch.source_id in self.fenced:
            raise LeaseLostError(batch.source_id)
        self.log.append(("begin", batch.batch_id))

    async def settle(self, batch: Batch, *, committed: bool) -> None:
        self.log.append(("settle" if committed else "release", batch.batch_id))

    async def close(self) -> None:
        self.closed = True


class FakeHandler:
    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self.failures = list(failures or [])
        self.handled: list[Batch] = []
        self.quarantined: list[Batch] = []

    async def handle(self, batch: Batch) -> BatchResult:
        if self.failures:
            raise self.failures.pop(0)
        self.handled.append(batch)
        return BatchResult(len(batch.records), len(batch.records), 0, 0)

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        self.quarantined.append(batch)
        return BatchResult(len(batch.records), 0, len(batch.records), 0)


def _runner(source: FakeSource, handler: FakeHandler, **kwargs: object) -> Runner:
    policy = kwargs.pop("policy", FlushPolicy(max_records=100, max_bytes=10_000, max_age=0.1))
    return Runner(
        source,
        handler,
        policy,  # type: ignore[arg-type]
        WorkerMetrics(new_registry(), "test"),
        pipeline="test",
        backoff=Backoff(base=0.001, cap=0.01),
        poll_interval=0.05,
        **kwargs,  # type: ignore[arg-type]
    )


async def _run_until(runner: Runner, done: object, within: float = 3.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done() and loop.time() < deadline:  # type: ignore[operator]  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_age_flush_without_new_data_then_checkpoint_after_handle() -> None:
    source, handler = FakeSource([Delivery("s1", _records(3))]), FakeHandler()
    await _run_until(_runner(source, handler), lambda: handler.handled)
    assert [len(b.records) for b in handler.handled] == [3]
    batch_id = handler.handled[0].batch_id
    assert source.log == [("begin", batch_id), ("settle", batch_id)]
    assert source.closed


async def test_batches_never_mix_partitions_and_split_on_record_limit() -> None:
    deliveries = [Delivery("s1", _records(5)), Delivery("s2", _records(2, 100)), Delivery("s1", _records(2, 5))]
    source, handler = FakeSource(deliveries), FakeHandler()
    runner = _runner(source, handler, policy=FlushPolicy(max_records=4, max_bytes=10_000, max_age=0.1))
    await _run_until(runner, lambda: sum(len(b.records) for b in handler.handled) == 9)
    for batch in handler.handled:
        assert {int(r.position) < 100 for r in batch.records} == {batch.source_id == "s1"}
        assert len(batch.records) <= 4
    s1 = [r.position for b in handler.handled if b.source_id == "s1" for r in b.records]
    assert s1 == [str(i) for i in range(7)]


async def test_transient_errors_retry_the_same_batch() -> None:
    source = FakeSource([Delivery("s1", _records(2))])
    handler = FakeHandler([TransientError("db restarting"), TransientError("again")])
    await _run_until(_runner(source, handler), lambda: handler.handled)
    assert len(handler.handled) == 1
    assert [step for step, _ in source.log] == ["begin", "settle"]


async def test_terminal_error_quarantines_and_the_batch_goes_on() -> None:
    source = FakeSource([Delivery("s1", _records(2), end=True), Delivery("s1", _records(1, 2), end=True)])
    handler = FakeHandler([TerminalError("bad file")])
    await _run_until(_runner(source, handler), lambda: handler.handled)
    assert len(handler.quarantined) == 1
    assert [step for step, _ in source.log] == ["begin", "settle", "begin", "settle"]


async def test_lease_lost_drops_the_partition_without_handling() -> None:
    source, handler = FakeSource([Delivery("s1", _records(2))], fenced={"s1"}), FakeHandler()
    runner = _runner(source, handler)
    await _run_until(runner, lambda: False, within=0.4)
    assert handler.handled == []
    assert source.log == []
    assert "s1" not in runner.buffers.parts


async def test_give_up_releases_the_batch_instead_of_committing() -> None:
    source = FakeSource([Delivery("s1", _records(2))])
    handler = FakeHandler([TransientError("down")] * 1000)
    runner = _runner(source, handler, give_up_after=0.05)
    await _run_until(runner, lambda: any(step == "release" for step, _ in source.log))
    assert ("release", source.log[0][1]) in source.log
    assert all(step != "settle" for step, _ in source.log)


async def test_whole_delivery_is_one_batch_and_replay_flag_kept() -> None:
    source = FakeSource([Delivery("s1", _records(3), whole=True, replay=True)])
    handler = FakeHandler()
    runner = _runner(source, handler, policy=FlushPolicy(max_records=1, max_bytes=10_000, max_age=10))
    await _run_until(runner, lambda: handler.handled)
    assert len(handler.handled) == 1
    assert handler.handled[0].replay
    assert len(handler.handled[0].records) == 3


async def test_revoked_drops_buffered_records() -> None:
    source = FakeSource([Delivery("s1", _records(2)), Delivery("s1", revoked=True)])
    handler = FakeHandler()
    runner = _runner(source, handler, policy=FlushPolicy(max_records=100, max_bytes=10_000, max_age=10))
    await _run_until(runner, lambda: False, within=0.3)
    assert handler.handled == []


async def test_stop_flushes_everything_buffered_within_grace() -> None:
    source = FakeSource([Delivery("s1", _records(2)), Delivery("s2", _records(1, 10))])
    handler = FakeHandler()
    runner = _runner(source, handler, policy=FlushPolicy(max_records=100, max_bytes=10_000, max_age=60))
    await _run_until(runner, lambda: not source.pending, within=1)
    assert sorted(b.source_id for b in handler.handled) == ["s1", "s2"]
    assert source.closed


async def test_memory_bound_flushes_largest_partition_early() -> None:
    big = tuple(SourceRecord(b"x" * 100, "k", str(i), 0) for i in range(5))
    source, handler = FakeSource([Delivery("s1", big), Delivery("s2", _records(1, 10))]), FakeHandler()
    policy = FlushPolicy(max_records=1000, max_bytes=10_000, max_age=60)
    runner = _runner(source, handler, policy=policy, max_buffered_bytes=300)
    await _run_until(runner, lambda: handler.handled, within=1)
    assert handler.handled[0].source_id == "s1"


@pytest.mark.parametrize("exc", [LeaseLostError("s1")])
async def test_lease_lost_on_settle_is_not_counted_committed(exc: Exception) -> None:
    class SettleFenced(FakeSource):
        async def settle(self, batch: Batch, *, committed: bool) -> None:
            raise exc

    source, handler = SettleFenced([Delivery("s1", _records(1))]), FakeHandler()
    runner = _runner(source, handler)
    await _run_until(runner, lambda: handler.handled)
    committed = runner.metrics.batches_committed.labels("test")._value.get()
    assert committed == 0
