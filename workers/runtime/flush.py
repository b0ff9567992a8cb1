"""Flush policy: when a partition's buffered records become a batch. Pure (time is passed in), no I/O.

A partition's buffer flushes when it holds ``max_records`` records, or ``max_bytes`` bytes of record data,
or when its oldest buffered record has waited ``max_age`` seconds - whichever comes first. Age is measured
from the moment the first record entered the buffer (local monotonic clock), so an idle stream still
flushes what it holds: the runner polls the source with a timeout no later than :meth:`Buffers.next_due`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from workers.runtime.types import SourceRecord


class FlushReason(enum.Enum):
    RECORDS = "records"
    BYTES = "bytes"
    AGE = "age"
    END = "end"  # partition end, revocation, shutdown or a whole delivery: flush regardless of size


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """Limits of one batch. ``max_records`` and ``max_bytes`` are also the most one batch ever holds."""

    max_records: int = 50_000
    max_bytes: int = 32 * 1024 * 1024
    max_age: float = 5.0

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.max_bytes < 1 or self.max_age <= 0:
            raise ValueError("flush limits must be positive")

    def reason(self, count: int, size: int, opened_at: float | None, now: float) -> FlushReason | None:
        """Why a buffer of ``count`` records / ``size`` bytes opened at ``opened_at`` must flush now, or None."""
        if count == 0 or opened_at is None:
            return None
        if count >= self.max_records:
            return FlushReason.RECORDS
        if size >= self.max_bytes:
            return FlushReason.BYTES
        if now - opened_at >= self.max_age:
            return FlushReason.AGE
        return None

    def take_count(self, sizes: list[int]) -> int:
        """How many leading records (of the given sizes) fit one batch: at least 1, at most the limits."""
        total = 0
        for index, size in enumerate(sizes):
            if index >= self.max_records or (index > 0 and total + size > self.max_bytes):
                return index
            total += size
        return len(sizes)


@dataclass(slots=True)
class PartitionBuffer:
    """Records of one partition waiting to be flushed, in source order."""

    records: list[SourceRecord] = field(default_factory=list)
    size: int = 0
    opened_at: float | None = None

    def add(self, records: tuple[SourceRecord, ...], now: float) -> None:
        if records and self.opened_at is None:
            self.opened_at = now
        self.records.extend(records)
        self.size += sum(len(record.data) for record in records)

    def take(self, policy: FlushPolicy, now: float) -> list[SourceRecord]:
        """Remove and return the leading records that fit one batch; the rest stays (reopened at ``now``)."""
        count = policy.take_count([len(record.data) for record in self.records])
        taken, self.records = self.records[:count], self.records[count:]
        self.size -= sum(len(record.data) for record in taken)
        self.opened_at = now if self.records else None
        return taken


@dataclass(slots=True)
class Buffers:
    """Per-partition buffers under one policy."""

    policy: FlushPolicy
    parts: dict[str, PartitionBuffer] = field(default_factory=dict)

    def add(self, source_id: str, records: tuple[SourceRecord, ...], now: float) -> None:
        self.parts.setdefault(source_id, PartitionBuffer()).add(records, now)

    def drop(self, source_id: str) -> int:
        """Forget a partition's buffered records (revoked); returns how many were dropped."""
        buffer = self.parts.pop(source_id, None)
        return len(buffer.records) if buffer else 0

    def total_bytes(self) -> int:
        return sum(buffer.size for buffer in self.parts.values())

    def total_records(self) -> int:
        return sum(len(buffer.records) for buffer in self.parts.values())

    def due(self, now: float) -> Iterator[tuple[str, FlushReason]]:
        """Partitions that must flush now, oldest first."""
        ready = []
        for source_id, buffer in self.parts.items():
            reason = self.policy.reason(len(buffer.records), buffer.size, buffer.opened_at, now)
            if reason is not None:
                ready.append((buffer.opened_at or now, source_id, reason))
        for _, source_id, reason in sorted(ready):
            yield source_id, reason

    def next_due(self) -> float | None:
        """Monotonic time at which the oldest buffer reaches ``max_age`` (None when all are empty)."""
        opened = [buffer.opened_at for buffer in self.parts.values() if buffer.opened_at is not None]
        return min(opened) + self.policy.max_age if opened else None

    def largest(self) -> str | None:
        """The partition holding the most bytes (flushed first under memory pressure)."""
        filled = [(buffer.size, source_id) for source_id, buffer in self.parts.items() if buffer.records]
        return max(filled)[1] if filled else None

    def take(self, source_id: str, now: float) -> list[SourceRecord]:
        buffer = self.parts.get(source_id)
        if buffer is None:
            return []
        taken = buffer.take(self.policy, now)
        if not buffer.records:
            del self.parts[source_id]
        return taken
