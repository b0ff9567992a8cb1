"""Flush policy: records, bytes and age limits, whichever first; age flushes without new data. No I/O."""

from __future__ import annotations

import pytest

from workers.runtime.flush import Buffers, FlushPolicy, FlushReason
from workers.runtime.types import SourceRecord


def _records(n: int, size: int = 10, start: int = 0) -> tuple[SourceRecord, ...]:
    return tuple(SourceRecord(b"x" * size, "k", str(start + i), 0) for i in range(n))


def test_nothing_buffered_never_flushes() -> None:
    policy = FlushPolicy(max_records=10, max_bytes=100, max_age=5)
    assert policy.reason(0, 0, None, 1000.0) is None


@pytest.mark.parametrize(
    ("count", "size", "age", "expected"),
    [
        (10, 10, 0.0, FlushReason.RECORDS),
        (3, 100, 0.0, FlushReason.BYTES),
        (3, 30, 5.0, FlushReason.AGE),
        (3, 30, 4.99, None),
        (10, 100, 9.0, FlushReason.RECORDS),  # whichever first: records checked before bytes and age
    ],
)
def test_reason_whichever_first(count: int, size: int, age: float, expected: FlushReason | None) -> None:
    policy = FlushPolicy(max_records=10, max_bytes=100, max_age=5)
    assert policy.reason(count, size, 100.0, 100.0 + age) is expected


def test_age_flush_happens_without_new_data() -> None:
    buffers = Buffers(FlushPolicy(max_records=100, max_bytes=10_000, max_age=2))
    buffers.add("s1", _records(3), now=10.0)
    assert list(buffers.due(11.0)) == []
    assert buffers.next_due() == 12.0  # the runner polls no longer than this
    assert list(buffers.due(12.0)) == [("s1", FlushReason.AGE)]


def test_age_counts_from_first_buffered_record() -> None:
    buffers = Buffers(FlushPolicy(max_records=100, max_bytes=10_000, max_age=2))
    buffers.add("s1", _records(1), now=10.0)
    buffers.add("s1", _records(1, start=1), now=11.5)
    assert list(buffers.due(12.0)) == [("s1", FlushReason.AGE)]


def test_take_respects_record_and_byte_limits_and_keeps_order() -> None:
    buffers = Buffers(FlushPolicy(max_records=4, max_bytes=35, max_age=5))
    buffers.add("s1", _records(10, size=10), now=0.0)
    first = buffers.take("s1", now=1.0)
    assert [r.position for r in first] == ["0", "1", "2"]  # 3 x 10 bytes; a 4th would exceed 35
    second = buffers.take("s1", now=1.0)
    assert [r.position for r in second] == ["3", "4", "5"]
    assert buffers.parts["s1"].opened_at == 1.0  # the remainder ages from the split


def test_oversized_record_still_makes_a_batch_of_one() -> None:
    policy = FlushPolicy(max_records=4, max_bytes=5, max_age=5)
    assert policy.take_count([100, 1]) == 1


def test_partitions_are_independent_and_due_oldest_first() -> None:
    buffers = Buffers(FlushPolicy(max_records=100, max_bytes=10_000, max_age=1))
    buffers.add("b", _records(1), now=2.0)
    buffers.add("a", _records(1), now=1.0)
    assert [source for source, _ in buffers.due(5.0)] == ["a", "b"]
    assert buffers.drop("a") == 1
    assert [source for source, _ in buffers.due(5.0)] == ["b"]


def test_largest_and_totals() -> None:
    buffers = Buffers(FlushPolicy())
    buffers.add("a", _records(2, size=5), now=0.0)
    buffers.add("b", _records(1, size=50), now=0.0)
    assert buffers.total_bytes() == 60
    assert buffers.total_records() == 3
    assert buffers.largest() == "b"


def test_invalid_limits_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        FlushPolicy(max_records=0)
