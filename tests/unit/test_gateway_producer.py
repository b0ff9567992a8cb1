"""service.producer: coalescing, per-entry retry, retry budget, bounded queue, drain on close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from common.errors import TerminalError
from common.metrics import new_registry
from service.metrics import GatewayMetrics
from service.normalise import Record
from service.producer import (
    THROTTLED,
    Producer,
    ProducerBusy,
    ProducerClosed,
    ProducerUnavailable,
)


class ScriptedSink:
    """Records every call; ``fail(record)`` decides an entry's error code; optional delay per call."""

    def __init__(self, fail: object = None, delay: float = 0.0, raises: BaseException | None = None) -> None:
        self.calls: list[list[bytes]] = []
        self.written: list[bytes] = []
        self.fail = fail
        self.delay = delay
        self.raises = raises

    async def put_records(self, records: Sequence[Record]) -> list[str | None]:
        self.calls.append([r.data for r in records])
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.raises is not None:
            raise self.raises
        codes: list[str | None] = []
        for record in records:
            code = self.fail(record, len(self.calls)) if callable(self.fail) else None
            if code is None:
                self.written.append(record.data)
            codes.append(code)
        return codes


def record(n: int, device: str = "d") -> Record:
    return Record(device, f"{device}-{n}".encode(), 1)


def producer(sink: ScriptedSink, **kwargs: float) -> tuple[Producer, GatewayMetrics]:
    metrics = GatewayMetrics(new_registry())
    options = {"linger": 0.005, "retry_budget": 1.0, "base_backoff": 0.001, "max_backoff": 0.01, **kwargs}
    return Producer(sink, metrics, jitter=lambda: 1.0, **options), metrics  # type: ignore[arg-type]


def value(metrics: GatewayMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


async def test_concurrent_requests_are_coalesced_into_one_call() -> None:
    sink = ScriptedSink()
    prod, metrics = producer(sink)
    await asyncio.gather(*(prod.put([record(i)]) for i in range(50)))
    assert len(sink.calls) == 1
    assert len(sink.calls[0]) == 50
    assert sorted(sink.written) == sorted(f"d-{i}".encode() for i in range(50))
    assert prod.inflight == 0
    assert value(metrics, "vitalstream_gateway_queue_depth") == 0
    assert value(metrics, "vitalstream_gateway_put_latency_seconds_count") == 1


async def test_calls_hold_at_most_500_records() -> None:
    sink = ScriptedSink()
    prod, _ = producer(sink)
    await asyncio.gather(*(prod.put([record(i)]) for i in range(1200)))
    assert [len(call) for call in sink.calls] == [500, 500, 200]


async def test_only_failed_entries_are_retried_and_nothing_is_doubled() -> None:
    sink = ScriptedSink(fail=lambda r, call: THROTTLED if call == 1 and r.data.endswith((b"1", b"3")) else None)
    prod, metrics = producer(sink)
    await asyncio.gather(*(prod.put([record(i)]) for i in range(5)))
    assert sorted(sink.calls[1]) == [b"d-1", b"d-3"]
    assert sorted(sink.written) == sorted(f"d-{i}".encode() for i in range(5))
    assert value(metrics, "vitalstream_gateway_put_retries_total") == 2
    assert value(metrics, "vitalstream_gateway_put_throttles_total") == 2


async def test_spent_budget_fails_the_request_and_not_its_neighbours() -> None:
    sink = ScriptedSink(fail=lambda r, call: THROTTLED if r.partition_key == "bad" else None)
    prod, _ = producer(sink, retry_budget=0.05)
    results = await asyncio.gather(
        prod.put([record(1, "bad"), record(2, "good")]), prod.put([record(3, "good")]), return_exceptions=True
    )
    assert isinstance(results[0], ProducerUnavailable)
    assert results[1] is None
    assert len(sink.calls) > 2  # retried until the budget ran out
    assert b"bad-1" not in sink.written
    assert prod.inflight == 0


async def test_a_failed_transient_call_is_retried_and_a_terminal_one_fails_at_once() -> None:
    attempts = [0]

    class Flaky(ScriptedSink):
        async def put_records(self, records: Sequence[Record]) -> list[str | None]:
            attempts[0] += 1
            if attempts[0] == 1:
                raise ConnectionResetError("reset")
            return await super().put_records(records)

    sink = Flaky()
    prod, _ = producer(sink)
    await prod.put([record(1)])
    assert attempts[0] == 2
    assert sink.written == [b"d-1"]

    terminal, _ = producer(ScriptedSink(raises=TerminalError("no such stream")))
    with pytest.raises(ProducerUnavailable):
        await terminal.put([record(1)])
    assert terminal.inflight == 0


async def test_full_queue_is_refused_at_once() -> None:
    sink = ScriptedSink(delay=0.05)
    prod, _ = producer(sink, max_inflight=3)
    first = asyncio.create_task(prod.put([record(1), record(2)]))
    await asyncio.sleep(0)
    with pytest.raises(ProducerBusy):
        await prod.put([record(3), record(4)])
    await first
    await prod.put([record(5), record(6), record(7)])


async def test_close_drains_pending_puts_then_refuses() -> None:
    sink = ScriptedSink(delay=0.05)
    prod, _ = producer(sink)
    pending = [asyncio.create_task(prod.put([record(i)])) for i in range(3)]
    await asyncio.sleep(0)
    await prod.close(grace=2)
    assert [task.result() for task in pending] == [None, None, None]
    assert len(sink.written) == 3
    with pytest.raises(ProducerClosed):
        await prod.put([record(9)])


async def test_close_fails_what_cannot_drain_in_time() -> None:
    prod, _ = producer(ScriptedSink(fail=lambda r, call: THROTTLED), retry_budget=10, base_backoff=0.5)
    pending = asyncio.create_task(prod.put([record(1)]))
    await asyncio.sleep(0.01)
    await prod.close(grace=0.05)
    with pytest.raises(ProducerClosed):
        await pending
    assert prod.inflight == 0
