"""``POST /v1/vitals`` as a raw ASGI endpoint (the hot path: no FastAPI body model, no dependency injection).

Order of checks, each answering as CONTRACT §2 says: failed-authentication budget of the source address
(429) → token (401) → content type (415) → ``Content-Length`` (413) → device rate limit (429) → body read
with the size enforced while reading (413) → JSON shape (400, 413 for too many readings) → per-reading
validation, devices covered (403) → producer acknowledgement (503 + ``Retry-After``) → 202 if at least one
reading was accepted, else 422.

A refusal made before the body was read (or a 413 while reading it) first reads and discards up to
``DRAIN_BYTES`` (8 MiB) of the body within ``DRAIN_SECONDS``, then answers with ``Connection: close``: a
client that writes its whole body before it reads gets its answer rather than a reset. Every response
carries ``X-Request-ID`` and the security headers (``X-Content-Type-Options: nosniff``,
``Cache-Control: no-store``). One JSON log line per request: ids, counts and status only.

A body that does not arrive within ``body_timeout`` seconds (``VITALSTREAM_BODY_TIMEOUT_SECONDS``: a
slowloris client) gets 408 and the connection is closed.

Failed authentications are counted per source address (``VITALSTREAM_AUTH_FAILURE_RATE``): past the
burst, a token that is not already known valid gets 429 without a registry look-up, so tokens cannot be
brute-forced. With ``fastpath=False`` (``VITALSTREAM_GATEWAY_FASTPATH=off``) every request takes the
reference per-reading path (same answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from common.devices import Device
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
    DEFAULT_MAX_READING_AGE_US,
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
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))
"""Sent with every response of the gateway (CONTRACT §2)."""
_CLOSE = (b"connection", b"close")
DRAIN_BYTES = 8 * 1024 * 1024
"""Most of a refused request's body read (and discarded) before the answer, so the client sees it."""
DRAIN_SECONDS = 10.0
"""Longest a refused request's body is read before the answer (a slow client gets it sooner or not at all)."""


class _Abort(Exception):
    """Ends a request early with an error status and ``{"detail": ...}``."""

    def __init__(
        self, status: int, detail: str, retry_after: float | None = None, *, drain: bool = False, close: bool = False
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.drain = drain  # the body is (partly) unread: read and discard it, answer, close
        self.close = close  # answer with Connection: close (also whenever the body is drained)


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


class BodyDeadlines:
    """Times out slow request bodies with one periodic check (every ``seconds / 4``, at most 1 s) rather than a
    timer per request (``asyncio.timeout`` costs ~10 µs a request here): a body still being read ``seconds``
    after :meth:`enter` has its task cancelled, and :meth:`expired` tells the handler it was the deadline."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._started: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the periodic check (in the running loop: the app's lifespan)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._check())

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    def enter(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._started[task] = time.monotonic()
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._started.pop(task, None)

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """True (and the cancellation undone) when ``task`` was cancelled by the deadline."""
        if task is None or task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    async def _check(self) -> None:
        interval = min(1.0, self.seconds / 4)
        while True:
            await asyncio.sleep(interval)
            limit = time.monotonic() - self.seconds
            for task, started in list(self._started.items()):
                if started <= limit:
                    del self._started[task]
                    self._expired.add(task)
                    task.cancel()


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class VitalsEndpoint:
    """The ASGI app serving ``POST /v1/vitals``; :meth:`bind` gives it its parts once the lifespan opened them."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        limiter: RateLimiter,
        *,
        auth_failures: RateLimiter | None = None,
        max_reading_age_us: int = DEFAULT_MAX_READING_AGE_US,
        fastpath: bool = True,
        body_timeout: float = 30.0,
    ) -> None:
        self._metrics = metrics
        self._limiter = limiter
        self._auth_failures = auth_failures or RateLimiter(1.0, 20.0)
        self._max_age_us = max_reading_age_us
        self._fastpath = fastpath
        self._deadlines = BodyDeadlines(body_timeout)
        self._authenticator: Authenticator | None = None
        self._producer: Producer | None = None
        self._by_status = {status: metrics.requests.labels(str(status)) for status in (202, 422)}
        self._by_code: dict[str, Any] = {}
        self._request_id = RequestIds().next
        self._log = RequestLog(logger)

    def bind(self, authenticator: Authenticator, producer: Producer) -> None:
        """Give the endpoint its parts and start the body deadline check (in the lifespan, in the running loop)."""
        self._authenticator = authenticator
        self._producer = producer
        self._deadlines.start()

    async def close(self) -> None:
        """Stop the body deadline check (at shutdown)."""
        await self._deadlines.stop()

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
            if abort.close or abort.drain:
                extra.append(_CLOSE)
            if abort.drain:
                await _drain(receive)
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
        headers = [
            _JSON,
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *SECURITY_HEADERS,
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive, request_id: str, counts: list[int]) -> tuple[int, bytes]:
        try:
            device, producer = await self._admit(scope)
        except _Abort as abort:
            abort.drain = True
            raise
        return await self._ingest(device, producer, receive, request_id, counts)

    async def _admit(self, scope: Scope) -> tuple[Device, Producer]:
        """The checks made before the body is read (401, 415, 413 by ``Content-Length``, 429, 503)."""
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
        if device is None or device is UNKNOWN:  # not known valid: within the address's failure budget?
            source = _source(scope)
            blocked = self._auth_failures.wait(source)
            if blocked:
                self._metrics.auth_refused.inc()
                raise _Abort(429, "too many failed authentications from this address", retry_after=blocked)
            if device is UNKNOWN:
                try:
                    device = await authenticator.authenticate(text)
                except TransientError:
                    raise _Abort(503, "the device registry is unavailable", retry_after=1) from None
            if device is None:
                self._auth_failures.acquire(source)
                raise _Abort(401, "unknown or invalid token")
        if content_type is None or not _is_json(content_type):
            raise _Abort(415, "content type must be application/json")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            raise _Abort(413 if length.isdigit() else 400, f"body over {MAX_BODY_BYTES} bytes")
        wait = self._limiter.acquire(device.device_id)
        if wait:
            raise _Abort(429, "rate limit of the device exceeded", retry_after=wait)
        return device, producer

    async def _ingest(
        self, device: Device, producer: Producer, receive: Receive, request_id: str, counts: list[int]
    ) -> tuple[int, bytes]:
        """Read the body, validate, put, answer (202/422, or 400/403/413/503 through ``_Abort``)."""
        task = self._deadlines.enter()
        try:
            message = await receive()
            body = message.get("body", b"")
            if message.get("more_body", False) or message["type"] != "http.request" or len(body) > MAX_BODY_BYTES:
                body = await _read_body(receive, message)
        except asyncio.CancelledError:
            if self._deadlines.expired(task):
                raise _Abort(408, "the request body did not arrive in time", close=True) from None
            raise
        finally:
            self._deadlines.leave(task)
        received_at_us = time.time_ns() // 1000
        latest_us = received_at_us + FUTURE_TOLERANCE_US
        earliest_us = received_at_us - self._max_age_us
        rejected: list[Rejection] = []
        fast = (
            fast_body_envelope(
                body, device.device_id, device.patient_id, request_id, received_at_us, latest_us, earliest_us
            )
            if self._fastpath
            else None
        )
        if fast is not None:
            records = [Record(device.device_id, fast[0], fast[1])]
            accepted = fast[1]
        else:
            try:
                items = parse_body(body)
            except BodyError as error:
                raise _Abort(error.status, error.detail) from None
            data = (
                fast_envelope(
                    items, device.device_id, device.patient_id, request_id, received_at_us, latest_us, earliest_us
                )
                if self._fastpath
                else None
            )
            if data is not None:
                records = [Record(device.device_id, data, len(items))]
                accepted = len(items)
            else:
                try:
                    valid, rejected = validate_readings(
                        items, device.device_id, received_at_us, max_age_us=self._max_age_us
                    )
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
            raise _Abort(413, f"body over {MAX_BODY_BYTES} bytes")  # read whole already
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > MAX_BODY_BYTES:
            raise _Abort(413, f"body over {MAX_BODY_BYTES} bytes", drain=True)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if size > MAX_BODY_BYTES:
        raise _Abort(413, f"body over {MAX_BODY_BYTES} bytes")  # read whole already
    return b"".join(chunks)


async def _drain(receive: Receive) -> None:
    """Read and discard the rest of the request body: up to ``DRAIN_BYTES``, for up to ``DRAIN_SECONDS``."""
    size = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while size <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _source(scope: Scope) -> str:
    """The client's address (as uvicorn gives it: behind a proxy, from ``X-Forwarded-For`` of trusted proxies)."""
    client = scope.get("client")
    return str(client[0]) if client else "-"
