"""Helpers of the gateway tests: an in-process uvicorn server, a fake registry, stream read-back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn

from common.devices import Device
from schemas.envelope import Envelope, decode_envelope


class FakeRegistry:
    """An in-memory device registry (token → device) that counts look-ups."""

    def __init__(self, tokens: dict[str, Device] | None = None) -> None:
        self.tokens = dict(tokens or {})
        self.lookups = 0
        self.fail: BaseException | None = None

    async def authenticate(self, token: str) -> Device | None:
        self.lookups += 1
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return self.tokens.get(token)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(app: Any, *, graceful_timeout: int = 10) -> AsyncIterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in this event loop; yields its base URL."""
    from service.main import server_config

    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, graceful_timeout))  # as `vitalstream gateway`
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped during start-up")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, graceful_timeout + 10)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def reading(device_id: str, **fields: Any) -> dict[str, Any]:
    """A valid reading of ``device_id`` (heart rate 72 /min a minute ago) with ``fields`` overriding."""
    base: dict[str, Any] = {
        "device_id": device_id,
        "metric": "heart_rate",
        "value": 72,
        "measured_at": iso(datetime.now(UTC) - timedelta(minutes=1)),
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


async def read_stream(kinesis: Any, stream: str) -> list[Envelope]:
    """Every envelope in every shard of ``stream`` from TRIM_HORIZON."""
    shards = (await kinesis.list_shards(StreamName=stream))["Shards"]
    envelopes: list[Envelope] = []
    for shard in shards:
        iterator = (
            await kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )
        )["ShardIterator"]
        while iterator:
            page = await kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            envelopes += [decode_envelope(record["Data"]) for record in page["Records"]]
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return envelopes


class Gateway:
    """A running gateway: its URL, its own Kinesis client (for fault hooks) and a token per device."""

    def __init__(self, url: str, kinesis: Any, app: Any) -> None:
        self.url = url
        self.kinesis = kinesis
        self.app = app
        self.tokens: dict[str, str] = {}

    def headers(self, device_id: str, content_type: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[device_id]}", "Content-Type": content_type}


@asynccontextmanager
async def running_gateway(
    dynamodb: Any, devices: dict[str, str | None], graceful_timeout: int = 10, **overrides: Any
) -> AsyncIterator[Gateway]:
    """The real gateway (settings from the environment + ``overrides``) over real HTTP, devices registered."""
    from common.aws import ClientFactory
    from common.devices import register_device
    from common.settings import GatewaySettings
    from service.app import create_app

    settings = GatewaySettings(**overrides)
    async with ClientFactory(settings.aws_region).client("kinesis", max_attempts=1) as kinesis:
        app = create_app(settings, kinesis=kinesis)
        async with serve(app, graceful_timeout=graceful_timeout) as url:
            gateway = Gateway(url, kinesis, app)
            for device_id, patient_id in devices.items():
                gateway.tokens[device_id] = await register_device(
                    dynamodb, settings.device_table, device_id, patient_id
                )
            yield gateway


class FakeHttpResponse:
    """What a ``before-call`` hook returns alongside the parsed response to short-circuit a botocore call."""

    status_code = 200
    headers: dict[str, str] = {}
    content = b""
    text = ""
