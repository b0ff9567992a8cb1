"""``POST /v1/vitals`` as a raw ASGI endpoint (the hot path: no FastAPI body model, no dependency injection).

Order of checks, each answering as CONTRACT §2 says: token (401) → content type (415) →
``Content-Length`` (413) → device rate limit (429) → body read with the size enforced while reading
(413) → JSON shape (400, 413 for too many readings) → per-reading validation, devices covered (403) →
producer acknowledgement (503 + ``Retry-After``) → 202 if at least one reading was accepted, else 422.
Every response carries ``X-Request-ID``. One JSON log line per request: ids, counts and status only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from common.errors import TransientError
from schemas.wire import MAX_BODY_BYTES
from service.auth import UNKNOWN, Authenticator
from service.fastpath import fast_body_envelope, fast_envelope
from service.metrics import GatewayMetrics
from service.normalise import Record, build_records
from service.producer import Producer, ProducerError
from service.ratelimit import RateLimiter
from service.request_log import RequestIds, RequestLog
from service.validate import (
    FUTURE_TOLERANCE_US,
    BodyError,
    ForeignDevice,
    Rejection,
    parse_body,
    validate_readings,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("service.requests")

_JSON = (b"content-type", b"application/json")


class _Abort(Exception):
    """Ends a request early with an error status and ``{"detail": ...}``."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class VitalsEndpoint:
    """The ASGI app serving ``POST /v1/vitals``; :meth:`bind` gives it its parts once the lifespan opened them."""

    def __init__(self, metrics: GatewayMetrics, limiter: RateLimiter) -> None:
        self._metrics = metrics
        self._limiter = limiter
        self._authenticator: Authenticator | None = None
        self._producer: Producer | None = None
        self._by_status = {status: metrics.requests.labels(str(status)) for status in (202, 422)}
        self._by_code: dict[str, Any] = {}
        self._request_id = RequestIds().next
        self._log = RequestLog(logger)

    def bind(self, authenticator: Authenticator, producer: Producer) -> None:
        self._authenticator = authenticator
        self._producer = producer

    def flush_log(self) -> None:
        """Write the buffered request log lines (at shutdown)."""
        self._log.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = self._request_id()
        counts = [0, 0, 0]  # devices, accepted, rejected
        try:
            status, body = await self._handle(scope, receive, request_id, counts)
            extra: list[tuple[bytes, bytes]] = []
        except _Abort as abort:
            status, body = abort.status, orjson.dumps({"detail": abort.detail})
            extra = []
            if abort.retry_after is not None:
                extra.append((b"retry-after", str(max(1, math.ceil(abort.retry_after))).encode()))
            if status == 401:
                extra.append((b"www-authenticate", b"Bearer"))
        except _Disconnected:
            status, body, extra = 499, b"", []
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self._metrics.requests.labels(str(status))
        counter.inc()
        self._log.emit(
            {
                "request_id": request_id,
                "status": status,
                "devices": counts[0],
                "accepted": counts[1],
                "rejected": counts[2],
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )
        if status == 499:
            return
        headers = [_JSON, (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id.encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive, request_id: str, counts: list[int]) -> tuple[int, bytes]:
        authorization = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        authenticator, producer = self._authenticator, self._producer
        if authenticator is None or producer is None:
            raise _Abort(503, "the gateway is starting", retry_after=1)

        scheme, _, token = (authorization or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise _Abort(401, "missing bearer token")
        text = token.strip().decode("latin-1")
        device = authenticator.cached(text)
        if device is UNKNOWN:
            try:
                device = await authenticator.authenticate(text)
            except TransientError:
                raise _Abort(503, "the device registry is unavailable", retry_after=1) from None
        if device is None:
            raise _Abort(401, "unknown or invalid token")
        if content_type is None or not _is_json(content_type):
            raise _Abort(415, "content type must be application/json")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise _Abort(413 if length.isdigit() else 400, f"body over {MAX_BODY_BYTES} bytes")
        wait = self._limiter.acquire(device.device_id)
        if wait:
            raise _Abort(429, "rate limit of the device exceeded", retry_after=wait)

        message = await receive()
        body = message.get("body", b"")
        if message.get("more_body", False) or message["type"] != "http.request" or len(body) > MAX_BODY_BYTES:
            body = await _read_body(receive, message)
        received_at_us = time.time_ns() // 1000
        latest_us = received_at_us + FUTURE_TOLERANCE_US
        rejected: list[Rejection] = []
        fast = fast_body_envelope(body, device.device_id, device.patient_id, request_id, received_at_us, latest_us)
        if fast is not None:
            records = [Record(device.device_id, fast[0], fast[1])]
            accepted = fast[1]
        else:
            try:
                items = parse_body(body)
            except BodyError as error:
                raise _Abort(error.status, error.detail) from None
            data = fast_envelope(items, device.device_id, device.patient_id, request_id, received_at_us, latest_us)
            if data is not None:
                records = [Record(device.device_id, data, len(items))]
                accepted = len(items)
            else:
                try:
                    valid, rejected = validate_readings(items, device.device_id, received_at_us)
                except ForeignDevice as error:
                    raise _Abort(403, str(error)) from None
                records = build_records(request_id, received_at_us, valid, device.patient_id) if valid else []
                accepted = len(valid)
        if records:
            counts[0] = len(records)
            try:
                await producer.put(records)
            except ProducerError as error:
                raise _Abort(503, "the stream cannot take the data now", retry_after=error.retry_after) from None
            self._metrics.readings_accepted.inc(accepted)
        else:
            accepted = 0
        counts[1], counts[2] = accepted, len(rejected)
        for rejection in rejected:
            counter = self._by_code.get(rejection.code)
            if counter is None:
                counter = self._by_code[rejection.code] = self._metrics.readings_rejected.labels(rejection.code)
            counter.inc()
        if accepted and not rejected:  # the common answer, without building a document
            return 202, b'{"request_id":"%s","accepted":%d,"rejected":[]}' % (request_id.encode(), accepted)
        document = {
            "request_id": request_id,
            "accepted": accepted,
            "rejected": [{"index": r.index, "code": r.code, "message": r.message} for r in rejected],
        }
        return (202 if accepted else 422), orjson.dumps(document)


async def _read_body(receive: Receive, message: Message) -> bytes:
    """The whole request body from its first ``message`` on; 413 as soon as it grows past ``MAX_BODY_BYTES``."""
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > MAX_BODY_BYTES:
            raise _Abort(413, f"body over {MAX_BODY_BYTES} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > MAX_BODY_BYTES:
            raise _Abort(413, f"body over {MAX_BODY_BYTES} bytes")
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if size > MAX_BODY_BYTES:
        raise _Abort(413, f"body over {MAX_BODY_BYTES} bytes")
    return b"".join(chunks)
