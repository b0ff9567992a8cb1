"""The local stack's emulators behave like the AWS services the pipelines rely on."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import unquote_plus

import asyncpg
import pytest

from common.devices import authenticate, register_device
from schemas.ddl import CONTRACT_TABLES
from tests.conftest import Resources
from vitalstream.devstack.bootstrap import bootstrap
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration


async def _read_all(kinesis: object, stream: str) -> list[bytes]:
    client: object = kinesis
    shards = (await client.list_shards(StreamName=stream))["Shards"]  # type: ignore[attr-defined]
    data: list[bytes] = []
    for shard in shards:
        iterator = (
            await client.get_shard_iterator(  # type: ignore[attr-defined]
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while iterator:
            page = await client.get_records(ShardIterator=iterator, Limit=10_000)  # type: ignore[attr-defined]
            data += [record["Data"] for record in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return data


async def test_concurrent_put_records_read_back_complete(clients: AwsClients, resources: Resources) -> None:
    stream = resources.names.stream

    async def writer(writer_id: int) -> None:
        for chunk in range(5):
            entries = [
                {"Data": f"{writer_id}:{chunk}:{i}".encode(), "PartitionKey": f"device-{writer_id}-{i % 37}"}
                for i in range(100)
            ]
            response = await clients.kinesis.put_records(StreamName=stream, Records=entries)
            assert response["FailedRecordCount"] == 0

    await asyncio.gather(*(writer(w) for w in range(4)))
    records = await _read_all(clients.kinesis, stream)
    expected = {f"{w}:{c}:{i}".encode() for w in range(4) for c in range(5) for i in range(100)}
    assert len(records) == 2_000
    assert set(records) == expected


async def test_object_under_landing_prefix_is_announced_on_sqs(clients: AwsClients, resources: Resources) -> None:
    names = resources.names
    key = "raw/claims/2026 11/claims batch+1.csv"
    await clients.s3.put_object(Bucket=names.bucket, Key=key, Body=b"claim_id\n")
    await clients.s3.put_object(Bucket=names.bucket, Key="elsewhere/x.csv", Body=b"x")
    url = (await clients.sqs.get_queue_url(QueueName=names.claims_queue))["QueueUrl"]
    keys: list[str] = []
    for _ in range(5):
        response = await clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            body = json.loads(message["Body"])
            keys += [unquote_plus(record["s3"]["object"]["key"]) for record in body.get("Records", [])]
        if keys:
            break
    assert keys == [key]


async def test_bootstrap_is_idempotent(clients: AwsClients, resources: Resources) -> None:
    await bootstrap(clients, resources.names, warehouse_url=resources.warehouse_url)
    await bootstrap(clients, resources.names, warehouse_url=resources.warehouse_url)
    shards = (await clients.kinesis.list_shards(StreamName=resources.names.stream))["Shards"]
    assert len(shards) == 4
    conn = await asyncpg.connect(resources.warehouse_url)
    try:
        tables = {row["tablename"] for row in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
    assert set(CONTRACT_TABLES) <= tables


async def test_device_registry_stores_only_a_salted_hash(clients: AwsClients, resources: Resources) -> None:
    table = resources.names.device_table
    token = await register_device(clients.dynamodb, table, "monitor-7", "patient-42")
    item = (await clients.dynamodb.get_item(TableName=table, Key={"device_id": {"S": "monitor-7"}}))["Item"]
    secret = token.rsplit(".", 1)[1]
    assert secret not in json.dumps(item)
    device = await authenticate(clients.dynamodb, table, token)
    assert device is not None
    assert (device.device_id, device.patient_id) == ("monitor-7", "patient-42")
    assert await authenticate(clients.dynamodb, table, token[:-2] + "xx") is None
    assert await authenticate(clients.dynamodb, table, "garbage") is None
    # Registering again rotates the token: the old one stops working.
    new_token = await register_device(clients.dynamodb, table, "monitor-7", None)
    assert await authenticate(clients.dynamodb, table, token) is None
    assert await authenticate(clients.dynamodb, table, new_token) is not None
