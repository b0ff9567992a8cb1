"""A bounded queue of deliveries between a source's fetchers and the runner (backpressure).

``put`` waits while the queue holds more than ``max_records`` records or ``max_bytes`` bytes (a delivery
is always accepted into an empty queue, so one oversized fetch cannot deadlock). ``purge`` removes every
queued delivery of a partition (used when its lease is lost) and ``put_control`` enqueues control
deliveries (revocations, ends) without waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque

from workers.runtime.types import Delivery


def _size(delivery: Delivery) -> int:
    return sum(len(record.data) for record in delivery.records)


class DeliveryQueue:
    def __init__(self, max_records: int = 100_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._items: deque[Delivery] = deque()
        self._records = 0
        self._bytes = 0
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def records(self) -> int:
        return self._records

    def _full(self) -> bool:
        return bool(self._items) and (self._records >= self.max_records or self._bytes >= self.max_bytes)

    async def put(self, delivery: Delivery) -> None:
        """Enqueue, waiting while the queue is full."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._full())
            self._append(delivery)

    async def put_control(self, delivery: Delivery) -> None:
        """Enqueue without waiting (control deliveries carry no or few records)."""
        async with self._changed:
            self._append(delivery)

    def _append(self, delivery: Delivery) -> None:
        self._items.append(delivery)
        self._records += len(delivery.records)
        self._bytes += _size(delivery)
        self._changed.notify_all()

    async def get_all(self, max_wait: float, limit: int = 1000) -> list[Delivery]:
        """Up to ``limit`` deliveries, waiting at most ``max_wait`` s for the first one."""
        async with self._changed:
            if not self._items and max_wait > 0:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._items)), max_wait)
                except TimeoutError:
                    return []
            taken: list[Delivery] = []
            while self._items and len(taken) < limit:
                delivery = self._items.popleft()
                self._records -= len(delivery.records)
                self._bytes -= _size(delivery)
                taken.append(delivery)
            self._changed.notify_all()
            return taken

    async def purge(self, source_id: str) -> int:
        """Remove every queued delivery of ``source_id``; returns how many records were removed."""
        async with self._changed:
            kept = deque(delivery for delivery in self._items if delivery.source_id != source_id)
            removed = [delivery for delivery in self._items if delivery.source_id == source_id]
            self._items = kept
            count = sum(len(delivery.records) for delivery in removed)
            self._records -= count
            self._bytes -= sum(_size(delivery) for delivery in removed)
            self._changed.notify_all()
            return count
