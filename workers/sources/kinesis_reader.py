"""Reading one Kinesis shard: iterators, GetRecords with ExpiredIterator/throttling handling, exact ranges."""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import ClientError

from common.errors import TransientError, classify
from workers.runtime.backoff import Backoff
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import SourceRecord


def to_record(raw: dict[str, Any]) -> SourceRecord:
    arrived = raw.get("ApproximateArrivalTimestamp")
    return SourceRecord(
        data=bytes(raw["Data"]),
        key=str(raw["PartitionKey"]),
        position=str(raw["SequenceNumber"]),
        arrived_at_us=int(arrived.timestamp() * 1_000_000) if arrived is not None else 0,
    )


def _code(exc: BaseException) -> str:
    return str(exc.response.get("Error", {}).get("Code", "")) if isinstance(exc, ClientError) else ""


class ShardReader:
    """Stateless helper over one stream's Kinesis client."""

    def __init__(self, kinesis: Any, stream: str, metrics: WorkerMetrics, *, limit: int, backoff: Backoff) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.metrics = metrics
        self.limit = limit
        self.backoff = backoff

    async def iterator(self, shard: str, after: str | None, *, at: bool = False) -> str:
        """AFTER_SEQUENCE_NUMBER ``after`` (AT_SEQUENCE_NUMBER with ``at``), TRIM_HORIZON when None."""
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard}
        if after is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AT_SEQUENCE_NUMBER" if at else "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = after
        return str((await self.kinesis.get_shard_iterator(**kwargs))["ShardIterator"])

    async def page(self, shard: str, iterator: str, resume_after: str | None) -> dict[str, Any]:
        """One GetRecords page. An expired iterator is replaced by one after ``resume_after`` (the last
        delivered record); throttling and other transient errors are retried with backoff; terminal raise."""
        attempt = 0
        while True:
            try:
                return dict(await self.kinesis.get_records(ShardIterator=iterator, Limit=self.limit))
            except ClientError as exc:
                if _code(exc) == "ExpiredIteratorException":
                    self.metrics.error("expired_iterator")
                    iterator = await self.iterator(shard, resume_after)
                    continue
                if classify(exc) is not TransientError:
                    raise
                self.metrics.error("throttled" if "Throughput" in _code(exc) else "transient")
            except Exception as exc:
                if classify(exc) is not TransientError:
                    raise
                self.metrics.error("transient")
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1

    async def read_range(self, shard: str, first: str, last: str, pause: float) -> list[SourceRecord]:
        """Exactly the records ``first..last`` (inclusive) of ``shard``: a recorded pending batch."""
        iterator: str | None = await self.iterator(shard, first, at=True)
        out: list[SourceRecord] = []
        end = int(last)
        while iterator:
            page = await self.page(shard, iterator, out[-1].position if out else None)
            for raw in page.get("Records", []):
                if int(raw["SequenceNumber"]) > end:
                    return out
                out.append(to_record(raw))
            if out and int(out[-1].position) >= end:
                return out
            if not page.get("Records") and not page.get("MillisBehindLatest"):
                return out
            iterator = page.get("NextShardIterator")
            await asyncio.sleep(pause)
        return out
