"""S3-event source + Runner against moto (S3 -> SQS notifications): commit deletes, failures dead-letter."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from common.errors import TransientError
from common.metrics import new_registry
from tests.conftest import Resources
from vitalstream.devstack.clients import AwsClients
from workers.runtime.backoff import Backoff
from workers.runtime.flush import FlushPolicy
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.runner import Runner
from workers.runtime.types import Batch, BatchResult, Delivery, make_batch
from workers.sources.s3_events import S3EventsSource, read_object

pytestmark = pytest.mark.integration


class Handler:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.batches: list[Batch] = []

    async def handle(self, batch: Batch) -> BatchResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise TransientError("warehouse down")
        self.batches.append(batch)
        return BatchResult(1, 1, 0, 0)

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        return BatchResult(1, 0, 1, 0)


async def _queue_depth(clients: AwsClients, url: str) -> int:
    attrs = await clients.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    return sum(int(v) for v in attrs["Attributes"].values())


async def _run(
    clients: AwsClients, queue: str, handler: Handler, until: Callable[[], object], within: float, **source_args: int
) -> S3EventsSource:
    metrics = WorkerMetrics(new_registry(), "claims")
    source = S3EventsSource(clients.sqs, clients.s3, queue=queue, pipeline="claims", metrics=metrics, **source_args)
    runner = Runner(source, handler, FlushPolicy(max_age=0.2), metrics, pipeline="claims",
                    backoff=Backoff(base=0.01, cap=0.02), give_up_after=0.05, poll_interval=1.0)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline and not await until():  # type: ignore[misc]  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    return source


async def test_object_is_one_batch_and_its_message_is_deleted_after_commit(
    clients: AwsClients, resources: Resources
) -> None:
    names = resources.names
    key = "raw/claims/2026 11/claims+1.csv"
    await clients.s3.put_object(Bucket=names.bucket, Key=key, Body=b"claim_id\nc1\n")
    url = (await clients.sqs.get_queue_url(QueueName=names.claims_queue))["QueueUrl"]
    handler = Handler()

    async def done() -> bool:
        return bool(handler.batches)

    await _run(clients, names.claims_queue, handler, done, within=15)
    assert len(handler.batches) == 1
    batch = handler.batches[0]
    assert batch.source_id == key
    record = batch.records[0]
    assert record.data == b""  # the object is streamed by the handler, never held by the source
    assert record.ref is not None
    assert (record.ref.bucket, record.ref.key, record.ref.size) == (names.bucket, key, 12)
    assert b"".join([c async for c in read_object(clients.s3, record.ref, 5)]) == b"claim_id\nc1\n"
    assert record.arrived_at_us > 0
    assert await _queue_depth(clients, url) == 0


async def test_message_whose_object_keeps_failing_goes_to_the_dead_letter_queue(
    clients: AwsClients, resources: Resources
) -> None:
    names = resources.names
    await clients.s3.put_object(Bucket=names.bucket, Key="raw/claims/bad.csv", Body=b"x")
    dlq = (await clients.sqs.get_queue_url(QueueName=f"{names.claims_queue}-dlq"))["QueueUrl"]
    url = (await clients.sqs.get_queue_url(QueueName=names.claims_queue))["QueueUrl"]

    async def dead_lettered() -> bool:
        return await _queue_depth(clients, dlq) == 1

    await _run(clients, names.claims_queue, Handler(fail=True), dead_lettered, within=30)
    assert await dead_lettered()
    assert await _queue_depth(clients, url) == 0


async def test_visibility_is_extended_while_processing(clients: AwsClients, resources: Resources) -> None:
    names = resources.names
    await clients.s3.put_object(Bucket=names.bucket, Key="raw/claims/slow.csv", Body=b"x")
    url = (await clients.sqs.get_queue_url(QueueName=names.claims_queue))["QueueUrl"]
    handler = Handler(delay=5.0)
    stolen: list[object] = []

    async def watch() -> bool:
        # Another consumer must not see the message while the slow handler holds it (visibility 3 s).
        if not handler.batches:
            response = await clients.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0, VisibilityTimeout=0)
            stolen.extend(m for m in response.get("Messages", []) if "ObjectCreated" in m["Body"])
        return bool(handler.batches)

    await _run(clients, names.claims_queue, handler, watch, within=20, visibility_timeout=3)
    assert len(handler.batches) == 1
    assert stolen == []
    assert await _queue_depth(clients, url) == 0


async def test_message_of_several_objects_is_deleted_only_when_every_object_committed(
    clients: AwsClients, resources: Resources
) -> None:
    """One message announcing two objects: the first committed and the second failed leaves the message in the
    queue (visible again at once); when both commit on its redelivery it is deleted."""
    names = resources.names
    records = []
    for key in ("manual/claims/a.csv", "manual/claims/b.csv"):  # outside the notified prefixes: one message only
        put = await clients.s3.put_object(Bucket=names.bucket, Key=key, Body=key.encode())
        records.append(
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2026-11-29T10:00:00.000Z",
                "s3": {"bucket": {"name": names.bucket}, "object": {"key": key, "eTag": put["ETag"]}},
            }
        )
    url = (await clients.sqs.get_queue_url(QueueName=names.claims_queue))["QueueUrl"]
    sent = await clients.sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps({"Records": records}).decode())
    metrics = WorkerMetrics(new_registry(), "claims")
    source = S3EventsSource(
        clients.sqs, clients.s3, queue=names.claims_queue, pipeline="claims", metrics=metrics, visibility_timeout=30
    )

    async def receive_both() -> list[Batch]:
        deliveries: list[Delivery] = []
        for _ in range(10):
            deliveries += await source.poll(1)
            if len(deliveries) >= 2:
                break
        assert [d.source_id for d in deliveries] == ["manual/claims/a.csv", "manual/claims/b.csv"]
        return [make_batch("claims", d.source_id, d.records) for d in deliveries]

    try:
        first, second = await receive_both()
        await source.settle(first, committed=True)
        assert await _queue_depth(clients, url) == 1  # in flight, not deleted
        await source.settle(second, committed=False)
        again = await clients.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0)
        assert [m["MessageId"] for m in again.get("Messages", [])] == [sent["MessageId"]]

        first, second = await receive_both()
        await source.settle(first, committed=True)
        assert await _queue_depth(clients, url) == 1
        await source.settle(second, committed=True)
        assert await _queue_depth(clients, url) == 0
    finally:
        await source.close()
