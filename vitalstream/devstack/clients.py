"""The set of AWS clients the stack tooling uses, opened once in an ``AsyncExitStack``."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from common.aws import ClientFactory


@dataclass
class AwsClients:
    kinesis: Any
    s3: Any
    sqs: Any
    dynamodb: Any
    sns: Any
    glue: Any


async def open_clients(stack: AsyncExitStack, region: str) -> AwsClients:
    factory = ClientFactory(region)
    return AwsClients(
        kinesis=await stack.enter_async_context(factory.client("kinesis")),
        s3=await stack.enter_async_context(factory.client("s3")),
        sqs=await stack.enter_async_context(factory.client("sqs")),
        dynamodb=await stack.enter_async_context(factory.client("dynamodb")),
        sns=await stack.enter_async_context(factory.client("sns")),
        glue=await stack.enter_async_context(factory.client("glue")),
    )
