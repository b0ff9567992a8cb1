"""Idempotent creation of every resource the pipelines use, on the emulators or on AWS.

Safe to run any number of times: each step checks what exists first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from schemas.ddl import analytics_statements, ddl_statements, migration_statements
from schemas.glue import LAKE_TABLES, table_input

STREAM_SHARDS = 4
MOTO_ACCOUNT = "123456789012"  # moto's default account: the local stack's ARNs
LANDING_QUEUES = {"ehr": ("raw/ehr/",), "claims": ("raw/claims/",)}
MAX_RECEIVES = 5


@dataclass(frozen=True)
class Names:
    stream: str
    bucket: str
    device_table: str
    lease_table: str
    ehr_queue: str
    claims_queue: str
    alert_topic: str
    alert_queue: str
    glue_database: str = "vitalstream"


def topic_arn(region: str, name: str, account: str = MOTO_ACCOUNT) -> str:
    """The ARN of SNS topic ``name`` (what ``CreateTopic`` answers)."""
    return f"arn:aws:sns:{region}:{account}:{name}"


async def ensure_stream(kinesis: Any, name: str, shards: int = STREAM_SHARDS) -> None:
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        await kinesis.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(200):
        summary = await kinesis.describe_stream_summary(StreamName=name)
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"stream {name} did not become ACTIVE")


async def ensure_bucket(s3: Any, bucket: str) -> None:
    try:
        await s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        await s3.create_bucket(Bucket=bucket)


async def ensure_queue(sqs: Any, name: str) -> tuple[str, str]:
    """Create ``name`` with a dead-letter queue; returns (queue url, queue arn)."""
    dlq_url = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    redrive = f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{MAX_RECEIVES}"}}'
    url = (await sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60", "RedrivePolicy": redrive}))[
        "QueueUrl"
    ]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    return url, arn


async def ensure_notifications(s3: Any, bucket: str, queue_by_prefix: dict[str, str]) -> None:
    """Announce ObjectCreated under each landing prefix on its queue."""
    config = {
        "QueueConfigurations": [
            {
                "Id": f"landing-{index}",
                "QueueArn": arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            }
            for index, (prefix, arn) in enumerate(sorted(queue_by_prefix.items()))
        ]
    }
    await s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


async def ensure_alerts(sns: Any, sqs: Any, topic: str, queue: str) -> tuple[str, str]:
    """SNS topic ``topic`` with SQS queue ``queue`` subscribed (raw message delivery), once; (topic arn, queue url)."""
    arn = str((await sns.create_topic(Name=topic))["TopicArn"])
    url = (await sqs.create_queue(QueueName=queue, Attributes={"MessageRetentionPeriod": "1209600"}))["QueueUrl"]
    queue_arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                       "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": arn}}}],
    }  # fmt: skip
    await sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    subscriptions = (await sns.list_subscriptions_by_topic(TopicArn=arn)).get("Subscriptions", [])
    if not any(sub.get("Endpoint") == queue_arn for sub in subscriptions):
        await sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return arn, str(url)


async def ensure_table(dynamodb: Any, name: str, hash_key: str) -> None:
    try:
        await dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": hash_key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": hash_key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except dynamodb.exceptions.ResourceInUseException:
        return
    waiter = dynamodb.get_waiter("table_exists")
    await waiter.wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})


async def ensure_glue_catalog(glue: Any, database: str, bucket: str) -> None:
    """The Glue database and the lake tables (CONTRACT §10); existing tables get the current definition."""
    with contextlib.suppress(glue.exceptions.AlreadyExistsException):
        await glue.create_database(
            DatabaseInput={"Name": database, "Description": "vitalstream data lake (processed and quarantine zones)"}
        )
    for table in LAKE_TABLES:
        spec = table_input(table, bucket)
        try:
            await glue.create_table(DatabaseName=database, TableInput=spec)
        except glue.exceptions.AlreadyExistsException:
            await glue.update_table(DatabaseName=database, TableInput=spec)


async def apply_ddl(warehouse_url: str) -> None:
    """Create every warehouse table (PostgreSQL dialect) if missing, then run the idempotent data migrations."""
    conn = await asyncpg.connect(warehouse_url)
    try:
        for statement in [*ddl_statements("postgres"), *migration_statements("postgres")]:
            await conn.execute(statement)
    finally:
        await conn.close()


async def apply_analytics(warehouse_url: str) -> None:
    """Create the marts, roles, grants and the masked ``analyst`` schema (CONTRACT §10) after the tables.

    One transaction, so concurrent bootstraps never see half of it; roles are cluster-wide and created once.
    """
    conn = await asyncpg.connect(warehouse_url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('vitalstream:analytics-ddl', 0))")
            for statement in analytics_statements("postgres"):
                await conn.execute(statement)
    finally:
        await conn.close()


LOADER_ROLE = "vitalstream_loader"


async def allow_login(warehouse_url: str, role: str = LOADER_ROLE) -> None:
    """Let ``role`` log in (the local stack's workers connect as the loader; the server trusts loopback)."""
    conn = await asyncpg.connect(warehouse_url)
    try:
        await conn.execute(f"ALTER ROLE {role} LOGIN")
    finally:
        await conn.close()


async def bootstrap(clients: Any, names: Names, warehouse_url: str | None, shards: int = STREAM_SHARDS) -> None:
    """Create stream, bucket, queues + notifications, lease and device tables, warehouse tables and marts."""
    await asyncio.gather(
        ensure_stream(clients.kinesis, names.stream, shards),
        ensure_bucket(clients.s3, names.bucket),
        ensure_table(clients.dynamodb, names.lease_table, "shard_id"),
        ensure_table(clients.dynamodb, names.device_table, "device_id"),
    )
    await ensure_glue_catalog(clients.glue, names.glue_database, names.bucket)
    queue_names = {"ehr": names.ehr_queue, "claims": names.claims_queue}
    by_prefix: dict[str, str] = {}
    for pipeline, prefixes in LANDING_QUEUES.items():
        _, arn = await ensure_queue(clients.sqs, queue_names[pipeline])
        by_prefix.update(dict.fromkeys(prefixes, arn))
    await ensure_notifications(clients.s3, names.bucket, by_prefix)
    await ensure_alerts(clients.sns, clients.sqs, names.alert_topic, names.alert_queue)
    if warehouse_url:
        await apply_ddl(warehouse_url)
        await apply_analytics(warehouse_url)
