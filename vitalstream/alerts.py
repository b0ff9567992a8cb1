"""``vitalstream alerts tail [--follow]``: deterioration alerts (CONTRACT §9) from the alert queue, as JSON lines.

The queue (``VITALSTREAM_ALERT_QUEUE``, default ``vitalstream-alerts``) is subscribed to the alert topic with
raw message delivery, so each message body is one alert's JSON. Tail reads without consuming: it receives
until the queue answers empty, prints each ``alert_id`` once, oldest first (by ``raised_at``), then makes the
messages visible again, so the next reader sees them too. ``--follow`` keeps polling and prints new alerts
as they arrive (each ``alert_id`` once) until interrupted.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack
from typing import Any, TextIO

import orjson

from common.aws import ClientFactory
from common.settings import CommonSettings

__all__ = ["AlertTailSettings", "drain", "run_tail"]

_HIDE_SECONDS = 30


class AlertTailSettings(CommonSettings):
    alert_queue: str = "vitalstream-alerts"


async def drain(sqs: Any, queue_url: str, wait_seconds: int = 0) -> list[dict[str, Any]]:
    """Every alert currently in the queue (first receive may wait ``wait_seconds``), left in the queue."""
    alerts: list[dict[str, Any]] = []
    handles: list[str] = []
    wait = wait_seconds
    while True:
        response = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, VisibilityTimeout=_HIDE_SECONDS
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        wait = 0
        for message in messages:
            handles.append(message["ReceiptHandle"])
            try:
                body = orjson.loads(message["Body"])
            except orjson.JSONDecodeError:
                continue
            if isinstance(body, dict) and "alert_id" in body:
                alerts.append(body)
    for start in range(0, len(handles), 10):
        entries = [{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in
                   enumerate(handles[start : start + 10])]  # fmt: skip
        await sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    return alerts


def _print_new(alerts: list[dict[str, Any]], seen: set[str], out: TextIO) -> None:
    for alert in sorted(alerts, key=lambda a: (str(a.get("raised_at", "")), str(a["alert_id"]))):
        if alert["alert_id"] in seen:
            continue
        seen.add(alert["alert_id"])
        out.write(orjson.dumps(alert).decode() + "\n")
    out.flush()


async def tail(follow: bool, out: TextIO = sys.stdout) -> int:
    settings = AlertTailSettings()
    seen: set[str] = set()
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(ClientFactory(settings.aws_region).client("sqs"))
        try:
            queue_url = (await sqs.get_queue_url(QueueName=settings.alert_queue))["QueueUrl"]
        except Exception as exc:
            print(f"alert queue {settings.alert_queue} not reachable: {type(exc).__name__}", file=sys.stderr)
            return 1
        _print_new(await drain(sqs, queue_url), seen, out)
        while follow:
            _print_new(await drain(sqs, queue_url, wait_seconds=5), seen, out)
            await asyncio.sleep(0.2)
    return 0


def run_tail(follow: bool) -> int:
    try:
        return asyncio.run(tail(follow))
    except KeyboardInterrupt:
        return 0
