"""S3-event source: SQS long polling of S3 ObjectCreated notifications, one object per unit of work.

Each announced object becomes one ``whole`` delivery (``source_id`` = object key, one record with an
:class:`~workers.runtime.types.ObjectRef` to stream the object with :func:`read_object` -- never its bytes --
``position`` = version id or ETag). While a message is in flight its visibility is extended
every ``visibility_timeout / 3`` s; it is deleted only when every object it announced was settled as
committed. An object that cannot be fetched, or whose batch the runtime gave up on, makes its message visible
again at once: SQS counts the receives and the queue's redrive policy moves a message that keeps failing to
its dead-letter queue after ``maxReceiveCount`` receives. ``s3:TestEvent`` and non-ObjectCreated messages
are deleted unprocessed. Keys arrive URL-encoded (``unquote_plus``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson
from botocore.exceptions import ClientError

from common.errors import TransientError, classify
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import Batch, Delivery, ObjectRef, SourceRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    bucket: str
    key: str
    position: str  # version id, else ETag (without quotes)
    version_id: str | None
    event_time_us: int


def parse_events(body: str) -> list[ObjectEvent]:
    """ObjectCreated records of an S3 notification body ([] for s3:TestEvent and anything else). Pure."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    events: list[ObjectEvent] = []
    records = document.get("Records", []) if isinstance(document, dict) else []
    for record in records:
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3", {})
        obj = s3.get("object", {})
        version = obj.get("versionId") or None
        etag = str(obj.get("eTag", "")).strip('"')
        try:
            when = datetime.fromisoformat(str(record.get("eventTime", "")).replace("Z", "+00:00"))
            event_us = int(when.timestamp() * 1_000_000)
        except ValueError:
            event_us = 0
        events.append(
            ObjectEvent(
                bucket=str(s3.get("bucket", {}).get("name", "")),
                key=unquote_plus(str(obj.get("key", ""))),
                position=version or etag or "unversioned",
                version_id=version,
                event_time_us=event_us,
            )
        )
    return events


@dataclass(slots=True)
class _InFlight:
    receipt: str
    remaining: int


class S3EventsSource:
    """:class:`~workers.runtime.types.Source` over an SQS queue of S3 ObjectCreated notifications."""

    def __init__(
        self,
        sqs: Any,
        s3: Any,
        *,
        queue: str,
        pipeline: str,
        metrics: WorkerMetrics,
        visibility_timeout: int = 60,
        max_messages: int = 10,
        max_wait_seconds: int = 20,
    ) -> None:
        self.sqs = sqs
        self.s3 = s3
        self.queue = queue  # name or URL
        self.pipeline = pipeline
        self.metrics = metrics
        self.visibility_timeout = visibility_timeout
        self.max_messages = max_messages
        self.max_wait_seconds = max_wait_seconds
        self._url: str | None = queue if queue.startswith(("http://", "https://")) else None
        self._by_batch: dict[tuple[str, str], list[str]] = {}  # (key, position) -> message ids
        self._messages: dict[str, _InFlight] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def _queue_url(self) -> str:
        if self._url is None:
            self._url = str((await self.sqs.get_queue_url(QueueName=self.queue))["QueueUrl"])
        return self._url

    # -- Source protocol --------------------------------------------------------------------------------

    async def poll(self, max_wait: float) -> Sequence[Delivery]:
        url = await self._queue_url()
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._extend_forever(), name="sqs-visibility")
        response = await self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self.max_messages,
            WaitTimeSeconds=int(min(max(max_wait, 0.0), self.max_wait_seconds)),
            VisibilityTimeout=self.visibility_timeout,
            AttributeNames=["ApproximateReceiveCount"],
        )
        deliveries: list[Delivery] = []
        for message in response.get("Messages", []):
            deliveries += await self._open(url, message)
        return deliveries

    async def begin(self, batch: Batch) -> None:
        """Nothing to record: the handler is idempotent per ``batch_id`` and SQS redelivers until deleted."""

    async def settle(self, batch: Batch, *, committed: bool) -> None:
        url = await self._queue_url()
        for message_id in self._by_batch.pop((batch.source_id, batch.last_position), []):
            entry = self._messages.get(message_id)
            if entry is None:
                continue
            if not committed:
                self._messages.pop(message_id)
                await self._make_visible(url, entry.receipt)
                continue
            entry.remaining -= 1
            if entry.remaining <= 0:
                self._messages.pop(message_id)
                await self._delete(url, entry.receipt)

    async def close(self) -> None:
        """Stop extending visibility; in-flight messages become visible again for other workers."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._messages and self._url:
            for entry in list(self._messages.values()):
                with contextlib.suppress(Exception):
                    await self._make_visible(self._url, entry.receipt)
        self._messages.clear()
        self._by_batch.clear()

    # -- internals ---------------------------------------------------------------------------------------

    async def _open(self, url: str, message: dict[str, Any]) -> list[Delivery]:
        """Fetch every object a message announces; all or nothing (a failure makes it visible again)."""
        events = parse_events(str(message.get("Body", "")))
        if not events:
            await self._delete(url, message["ReceiptHandle"])
            return []
        deliveries: list[Delivery] = []
        for event in events:
            try:
                size = await self._size(event)
            except Exception as exc:
                kind = "transient" if classify(exc) is TransientError else "terminal"
                self.metrics.error(f"fetch_{kind}")
                log.warning(
                    "object fetch failed: message returned to the queue",
                    extra={
                        "pipeline": self.pipeline,
                        "source_key": event.key,
                        "error_type": type(exc).__name__,
                        "attempt": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                    },
                )
                await self._make_visible(url, message["ReceiptHandle"])
                return []
            ref = ObjectRef(event.bucket, event.key, event.version_id, size)
            record = SourceRecord(
                data=b"", key=event.key, position=event.position, arrived_at_us=event.event_time_us, ref=ref
            )
            deliveries.append(Delivery(event.key, (record,), whole=True))
        message_id = str(message["MessageId"])
        self._messages[message_id] = _InFlight(receipt=message["ReceiptHandle"], remaining=len(deliveries))
        for event in events:
            self._by_batch.setdefault((event.key, event.position), []).append(message_id)
        return deliveries

    async def _size(self, event: ObjectEvent) -> int:
        """HEAD the object (it exists and is readable now); its bytes are streamed by the handler."""
        kwargs: dict[str, Any] = {"Bucket": event.bucket, "Key": event.key}
        if event.version_id:
            kwargs["VersionId"] = event.version_id
        response = await self.s3.head_object(**kwargs)
        return int(response.get("ContentLength", 0))

    async def _extend_forever(self) -> None:
        interval = max(1.0, self.visibility_timeout / 3)
        while True:
            await asyncio.sleep(interval)
            if not self._messages or self._url is None:
                continue
            for entry in list(self._messages.values()):
                try:
                    await self.sqs.change_message_visibility(
                        QueueUrl=self._url, ReceiptHandle=entry.receipt, VisibilityTimeout=self.visibility_timeout
                    )
                except ClientError as exc:
                    self.metrics.error("visibility")
                    log.warning("visibility extension failed", extra={"error_type": type(exc).__name__})

    async def _make_visible(self, url: str, receipt: str) -> None:
        try:
            await self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except ClientError as exc:
            log.warning("could not release message", extra={"error_type": type(exc).__name__})

    async def _delete(self, url: str, receipt: str) -> None:
        await self.sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)


async def read_object(s3: Any, ref: ObjectRef, chunk_bytes: int = 8 * 1024 * 1024) -> AsyncIterator[bytes]:
    """The object's bytes as they arrive, in pieces of at most ``chunk_bytes`` (one streamed GET of the
    version ``ref`` names, so every piece is of the same object version; memory does not grow with the size)."""
    kwargs: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id:
        kwargs["VersionId"] = ref.version_id
    response = await s3.get_object(**kwargs)
    async with response["Body"] as body:
        while True:
            chunk = await body.read(chunk_bytes)
            if not chunk:
                return
            yield bytes(chunk)
