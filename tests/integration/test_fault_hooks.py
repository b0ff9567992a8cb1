"""The fault hooks on real clients against kinesalite and moto: partial PutRecords failures really are partial,
throttling and S3 500/503 surface as the errors AWS gives."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from botocore.exceptions import ClientError

from common.aws import ClientFactory
from tests.conftest import Resources

pytestmark = pytest.mark.integration


@pytest.fixture
async def faulty(resources: Resources) -> AsyncIterator[tuple[Any, Any]]:
    saved = dict(os.environ)
    os.environ.update(resources.env)
    try:
        async with AsyncExitStack() as stack:
            factory = ClientFactory("us-east-1", faults="kinesis=0.5,s3=0.7,seed=3")
            kinesis = await stack.enter_async_context(factory.client("kinesis", max_attempts=1))
            s3 = await stack.enter_async_context(factory.client("s3", max_attempts=1))
            yield kinesis, s3
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _count_records(kinesis: Any, stream: str) -> int:
    total = 0
    shards = (await kinesis.list_shards(StreamName=stream))["Shards"]
    for shard in shards:
        iterator = (
            await kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        errors: list[str] = []
        for _ in range(50):  # GetRecords is throttled half the time too
            try:
                total += len((await kinesis.get_records(ShardIterator=iterator, Limit=10_000))["Records"])
                break
            except ClientError as exc:
                errors.append(exc.response["Error"]["Code"])
        assert set(errors) <= {"ProvisionedThroughputExceededException"}
    return total


async def test_partial_failures_and_throttling_of_put_records(faulty: tuple[Any, Any], resources: Resources) -> None:
    kinesis, _ = faulty
    stream = resources.names.stream
    written = partial_failed = 0
    throttled: list[str] = []
    for call in range(20):
        records = [{"Data": f"{call}-{i}".encode(), "PartitionKey": f"k{i}"} for i in range(10)]
        try:
            response = await kinesis.put_records(StreamName=stream, Records=records)
        except ClientError as exc:
            throttled.append(exc.response["Error"]["Code"])
            continue
        entries = response["Records"]
        assert len(entries) == len(records)
        failed = [e for e in entries if "ErrorCode" in e]
        assert response["FailedRecordCount"] == len(failed)
        assert all(e["ErrorCode"] == "ProvisionedThroughputExceededException" for e in failed)
        assert all("SequenceNumber" in e for e in entries if "ErrorCode" not in e)
        partial_failed += len(failed)
        written += len(entries) - len(failed)
    assert set(throttled) == {"ProvisionedThroughputExceededException"}
    assert partial_failed > 0
    assert written > 0
    assert await _count_records(kinesis, stream) == written  # what failed was really not written


async def test_s3_answers_500_and_503_slow_down(faulty: tuple[Any, Any], resources: Resources) -> None:
    _, s3 = faulty
    answers: set[tuple[str, int]] = set()
    for i in range(40):  # max_attempts=1 is one retry: an error surfaces when both attempts fail
        try:
            await s3.put_object(Bucket=resources.names.bucket, Key=f"faults/{i}", Body=b"x")
            answers.add(("ok", 200))
        except ClientError as exc:
            answers.add((exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]))
    assert answers == {("ok", 200), ("InternalError", 500), ("SlowDown", 503)}, answers


async def test_injected_errors_go_through_botocore_retries_like_real_ones(resources: Resources) -> None:
    """Answered in place of the HTTP exchange, so the standard retry mode retries them as it would AWS's."""
    saved = dict(os.environ)
    os.environ.update(resources.env)
    try:
        factory = ClientFactory("us-east-1", faults="kinesis=0.5,s3=0.5,seed=5")
        async with factory.client("s3", max_attempts=10) as s3, factory.client("kinesis", max_attempts=10) as kinesis:
            for i in range(20):
                await s3.put_object(Bucket=resources.names.bucket, Key=f"retried/{i}", Body=b"x")
            listed = await s3.list_objects_v2(Bucket=resources.names.bucket, Prefix="retried/")
            assert listed["KeyCount"] == 20
            shards = (await kinesis.list_shards(StreamName=resources.names.stream))["Shards"]
            assert shards
    finally:
        os.environ.clear()
        os.environ.update(saved)
