"""Glue Data Catalog sink: registers the lake partitions a committed batch wrote (CONTRACT §10).

``register(keys)`` is called after the batch's warehouse commit with the object keys the batch left in the lake;
keys outside a partitioned lake table (:data:`schemas.glue.LAKE_TABLES`) are ignored. Per call:

- partitions already known to this process (an in-process cache of every partition registered or found to
  exist) cost nothing: no API call when a batch only adds to known partitions;
- the others go to ``BatchCreatePartition`` in chunks of 100 (the API's limit), per table;
  ``AlreadyExistsException`` (in the per-entry errors) is success, so registering is idempotent across
  processes, restarts and replays;
- a partition that failed otherwise (throttling, a missing table, an outage) stays pending and is retried with
  a later call; the batch is never failed for it (its data is committed and in S3; the catalog catches up).
  Each API call is bounded by ``call_timeout`` seconds, and after a failed call no call is made for
  ``retry_after`` seconds, so a Glue outage costs a batch at most one bounded call, not one per batch.
  At most ``max_pending`` partitions wait; beyond that the oldest are dropped with a warning (a crawler or
  ``MSCK REPAIR TABLE`` restores them).

Logs carry table names, partition values and error codes only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from schemas.glue import LakeTable, partition_input, partition_of

__all__ = ["BATCH_LIMIT", "GlueCatalog"]

log = logging.getLogger(__name__)

BATCH_LIMIT = 100
"""``BatchCreatePartition`` takes at most 100 partitions per call."""


class GlueCatalog:
    """Registers partitions of the lake tables in one Glue database, through an injected aiobotocore client."""

    def __init__(
        self,
        glue: Any,
        database: str,
        bucket: str,
        *,
        max_pending: int = 10_000,
        call_timeout: float = 10.0,
        retry_after: float = 30.0,
    ) -> None:
        self.glue = glue
        self.database = database
        self.bucket = bucket
        self.max_pending = max_pending
        self.call_timeout = call_timeout
        self.retry_after = retry_after
        self._quiet_until = 0.0
        self.known: set[tuple[str, tuple[str, ...]]] = set()
        self._pending: dict[tuple[str, tuple[str, ...]], LakeTable] = {}
        self.calls = 0

    async def register(self, keys: Iterable[str]) -> int:
        """Register the partitions of ``keys`` (and retry pending ones); returns how many became known."""
        for key in keys:
            found = partition_of(key)
            if found is None:
                continue
            table, values = found
            ident = (table.name, values)
            if ident not in self.known:
                self._pending.setdefault(ident, table)
        if not self._pending or time.monotonic() < self._quiet_until:
            self._trim()
            return 0
        by_table: dict[str, list[tuple[LakeTable, tuple[str, ...]]]] = {}
        for (name, values), table in sorted(self._pending.items()):
            by_table.setdefault(name, []).append((table, values))
        added = 0
        for name, entries in by_table.items():
            for start in range(0, len(entries), BATCH_LIMIT):
                added += await self._create(name, entries[start : start + BATCH_LIMIT])
        self._trim()
        return added

    async def _create(self, name: str, entries: list[tuple[LakeTable, tuple[str, ...]]]) -> int:
        self.calls += 1
        try:
            response = await asyncio.wait_for(
                self.glue.batch_create_partition(
                    DatabaseName=self.database,
                    TableName=name,
                    PartitionInputList=[partition_input(table, self.bucket, values) for table, values in entries],
                ),
                timeout=self.call_timeout,
            )
        except Exception as exc:
            self._quiet_until = time.monotonic() + self.retry_after
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            log.warning(
                "glue partition registration failed; retried with the next batch",
                extra={"component": name, "count": len(entries), "code": code},
            )
            return 0
        failed: set[tuple[str, ...]] = set()
        for error in response.get("Errors", []):
            values = tuple(error.get("PartitionValues", ()))
            code = error.get("ErrorDetail", {}).get("ErrorCode", "")
            if code != "AlreadyExistsException":
                failed.add(values)
                log.warning(
                    "glue partition not registered; retried with the next batch",
                    extra={"component": name, "path": "/".join(values), "code": code},
                )
        added = 0
        for _table, values in entries:
            if values in failed:
                continue
            self.known.add((name, values))
            self._pending.pop((name, values), None)
            added += 1
        return added

    def _trim(self) -> None:
        excess = len(self._pending) - self.max_pending
        if excess <= 0:
            return
        for ident in sorted(self._pending)[:excess]:
            del self._pending[ident]
        log.warning("glue partitions dropped from the retry list", extra={"count": excess})

    @property
    def pending(self) -> int:
        return len(self._pending)
