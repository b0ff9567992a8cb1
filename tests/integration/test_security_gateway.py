"""The gateway against hostile clients over real HTTP (CONTRACT §2, SECURITY.md): refusals that reach a client
writing its whole body first (urllib, httpx, a raw socket), security headers and no banner on every response,
failed-authentication bursts limited per address, slow bodies timed out, and a corpus of hostile bodies that each
get their documented answer while the service stays up."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.conftest import Resources
from tests.helpers.gateway import Gateway, reading, running_gateway
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.integration

DEVICE = "dev-sec-1"
MIB = 1024 * 1024


@pytest.fixture
async def gateway(resources: Resources, clients: AwsClients) -> AsyncIterator[Gateway]:
    async with running_gateway(
        clients.dynamodb, {DEVICE: "pat-1"}, auth_failure_rate="0.5:4", body_timeout_seconds=1.5
    ) as running:
        yield running


def raw_exchange(url: str, request: bytes, stall_after: int | None = None) -> bytes:
    """Send ``request`` on a fresh socket, all of it before reading anything (or only its first ``stall_after``
    bytes, then nothing more: a slowloris body), then read until the server closes; the bytes received. A server
    that never answers fails the test by the socket's timeout."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request if stall_after is None else request[:stall_after])
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def post_request(gateway: Gateway, body: bytes, *, token: bool = True, content_type: str = "application/json") -> bytes:
    headers = ["POST /v1/vitals HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
               f"Content-Length: {len(body)}"]  # fmt: skip
    if token:
        headers.append(f"Authorization: Bearer {gateway.tokens[DEVICE]}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def headers_of(response: bytes) -> dict[str, str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head)}


# -- refusals before the body is read reach a client that writes everything first -----------------------------

BIG = b'{"readings": [' + b" " * (5 * MIB) + b"]}"  # more than loopback's socket buffers take unread


@pytest.mark.parametrize(
    ("token", "content_type", "body", "status"),
    [
        (True, "application/json", BIG, 413),  # 413 by Content-Length
        (False, "application/json", BIG, 401),
        (True, "text/plain", BIG, 415),
        (True, "application/json", b"x" * (7 * MIB), 413),
    ],
    ids=["413", "401", "415", "413-7MiB"],
)
async def test_a_raw_socket_that_sends_everything_first_gets_the_refusal(
    gateway: Gateway, token: bool, content_type: str, body: bytes, status: int
) -> None:
    request = post_request(gateway, body, token=token, content_type=content_type)
    response = await asyncio.to_thread(raw_exchange, gateway.url, request)
    assert status_of(response) == status, response[:200]
    headers = headers_of(response)
    assert headers.get("connection") == "close", response[:400]
    assert "detail" in orjson.loads(response.split(b"\r\n\r\n", 1)[1])


async def test_urllib_and_httpx_writing_a_large_body_get_413_401_415(gateway: Gateway) -> None:
    def with_urllib(headers: dict[str, str]) -> int:
        request = urllib.request.Request(f"{gateway.url}/v1/vitals", data=BIG, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - a loopback test URL
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    def with_httpx(headers: dict[str, str]) -> int:
        with httpx.Client(timeout=30) as client:
            return client.post(f"{gateway.url}/v1/vitals", content=BIG, headers=headers).status_code

    token = gateway.headers(DEVICE)
    cases = [(token, 413), ({"Content-Type": "application/json"}, 401), (gateway.headers(DEVICE, "text/plain"), 415)]
    for headers, status in cases:
        assert await asyncio.to_thread(with_urllib, headers) == status
        assert await asyncio.to_thread(with_httpx, headers) == status


# -- headers on every response -------------------------------------------------------------------------------


async def test_every_response_has_the_security_headers_and_no_server_banner(gateway: Gateway) -> None:
    good = orjson.dumps(reading(DEVICE))
    unknown_metric = orjson.dumps(reading(DEVICE, metric="x"))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        responses = [
            await http.get("/healthz"),
            await http.get("/readyz"),
            await http.get("/metrics"),
            await http.get("/docs"),
            await http.get("/openapi.json"),
            await http.get("/no-such-page"),
            await http.get("/v1/vitals"),  # 405
            await http.post("/v1/vitals", content=good, headers=gateway.headers(DEVICE)),  # 202
            await http.post("/v1/vitals", content=b"{", headers=gateway.headers(DEVICE)),  # 400
            await http.post("/v1/vitals", content=good, headers={"Content-Type": "application/json"}),  # 401
            await http.post("/v1/vitals", content=good, headers=gateway.headers(DEVICE, "text/plain")),  # 415
            await http.post("/v1/vitals", content=unknown_metric, headers=gateway.headers(DEVICE)),  # 422
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 405, 202, 400, 401, 415, 422]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["cache-control"] == "no-store", response.url
        assert "server" not in response.headers, response.url


# -- brute force of tokens -------------------------------------------------------------------------------------


async def test_failed_authentication_bursts_are_limited_per_source_address(gateway: Gateway) -> None:
    body = orjson.dumps(reading(DEVICE))
    wrong = {"Authorization": "Bearer vst1.ZGV2LXNlYy0x.guess", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        assert (await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE))).status_code == 202
        statuses = []
        for attempt in range(6):
            guess = {**wrong, "Authorization": f"{wrong['Authorization']}{attempt}"}
            statuses.append((await http.post("/v1/vitals", content=body, headers=guess)).status_code)
        assert statuses == [401, 401, 401, 401, 429, 429]
        limited = await http.post("/v1/vitals", content=body, headers=wrong)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        # a token already known valid is still served from this address; the registry is not asked for guesses
        assert (await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE))).status_code == 202
        metrics = (await http.get("/metrics")).text
        assert "vitalstream_gateway_auth_refused_total 3.0" in metrics
        await asyncio.sleep(2.1)  # 0.5/s: one more try after 2 s
        assert (await http.post("/v1/vitals", content=body, headers=wrong)).status_code == 401


# -- slow bodies ---------------------------------------------------------------------------------------------


async def test_a_slow_body_gets_408_and_the_service_stays_up(gateway: Gateway) -> None:
    body = orjson.dumps(reading(DEVICE))
    request = post_request(gateway, body)
    head = len(request) - len(body) + 5  # the headers and 5 bytes of the body, then silence
    slow = asyncio.create_task(asyncio.to_thread(raw_exchange, gateway.url, request, head))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        await asyncio.sleep(0.3)
        ok = await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE))
        assert ok.status_code == 202  # served while the slow one waits
    response = await slow
    assert status_of(response) == 408, response[:200]
    assert headers_of(response)["connection"] == "close"


# -- the hostile corpus --------------------------------------------------------------------------------------

GOOD = reading(DEVICE)
GOOD_TEXT = orjson.dumps(GOOD).decode()


def with_value(text: str) -> bytes:
    return GOOD_TEXT.replace('"value":72', f'"value":{text}').encode()


HOSTILE: list[tuple[str, bytes, int, list[str] | None]] = [
    ("deep-array", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("deep-object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, None),
    ("deep-in-reading", GOOD_TEXT.replace('"heart_rate"', "[" * 1000 + "]" * 1000).encode(), 422, ["invalid_type"]),
    ("deep-readings", b'{"readings":' + b"[" * 2000 + b"]" * 2000 + b"}", 400, None),
    ("huge-number", with_value("1e400"), 400, None),
    ("huge-negative", with_value("-1e400"), 400, None),
    ("huge-integer", with_value("1" + "0" * 400), 400, None),
    ("large-finite", with_value("1.7976931348623157e308"), 202, []),
    ("unit-overflow", GOOD_TEXT.replace('"value":72', '"value":1e308,"unit":"bpm"').encode(), 202, []),
    ("kpa-overflow", orjson.dumps({**GOOD, "metric": "bp_systolic", "unit": "kPa", "value": 1e308}), 422,
     ["invalid_value"]),
    ("tiny-number", with_value("1e-400"), 202, []),
    ("denormal", with_value("4.9e-324"), 202, []),
    ("nan", with_value("NaN"), 400, None),
    ("infinity", with_value("Infinity"), 400, None),
    ("minus-infinity", with_value("-Infinity"), 400, None),
    ("invalid-utf8", GOOD_TEXT.replace("heart_rate", "heart\xff").encode("latin-1"), 400, None),
    ("lone-surrogate", GOOD_TEXT.replace("heart_rate", "heart\\ud800").encode(), 400, None),
    ("duplicate-keys", GOOD_TEXT.replace('"value":72', '"value":"x","value":72').encode(), 202, []),
    ("duplicate-keys-last-wins", GOOD_TEXT.replace('"value":72', '"value":72,"value":"x"').encode(), 422,
     ["invalid_type"]),
    ("offset-99", orjson.dumps({**GOOD, "measured_at": GOOD["measured_at"].replace("Z", "+00:99")}), 422,
     ["invalid_timestamp"]),
    ("offset-24", orjson.dumps({**GOOD, "measured_at": GOOD["measured_at"].replace("Z", "+24:00")}), 422,
     ["invalid_timestamp"]),
    ("offset-no-colon", orjson.dumps({**GOOD, "measured_at": GOOD["measured_at"].replace("Z", "+0100")}), 422,
     ["invalid_timestamp"]),
    ("arabic-digit", orjson.dumps({**GOOD, "measured_at": GOOD["measured_at"].replace("Z", "\u0662Z")}), 422,
     ["invalid_timestamp"]),
    ("year-1", orjson.dumps({**GOOD, "measured_at": "0001-01-01T00:00:00Z"}), 422, ["stale_timestamp"]),
    ("epoch", orjson.dumps({**GOOD, "measured_at": "1970-01-01T00:00:00Z"}), 422, ["stale_timestamp"]),
    ("year-9999", orjson.dumps({**GOOD, "measured_at": "9999-12-31T23:59:59Z"}), 422, ["future_timestamp"]),
    ("number-as-string", orjson.dumps({**GOOD, "value": "72"}), 422, ["invalid_type"]),
    ("boolean-value", orjson.dumps({**GOOD, "value": True}), 422, ["invalid_type"]),
    ("time-as-number", orjson.dumps({**GOOD, "measured_at": 1767268800}), 422, ["invalid_type"]),
    ("nul-in-string", orjson.dumps({**GOOD, "message_id": "a\x00b"}), 202, []),
    ("not-an-object", b"[]", 400, None),
    ("empty", b"", 400, None),
    ("bom", b"\xef\xbb\xbf" + GOOD_TEXT.encode(), 400, None),
    ("trailing-garbage", GOOD_TEXT.encode() + b"}", 400, None),
    ("1001-readings", orjson.dumps({"readings": [GOOD] * 1001}), 413, None),
]  # fmt: skip


async def test_the_hostile_corpus_gets_its_documented_answers_and_the_service_stays_up(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        for name, body, status, codes in HOSTILE:
            response = await http.post("/v1/vitals", content=body, headers=gateway.headers(DEVICE))
            assert response.status_code == status, (name, response.text[:300])
            if codes is not None:
                assert [r["code"] for r in response.json()["rejected"]] == codes, name
            else:
                assert isinstance(response.json()["detail"], str), name
        eight = b'{"readings":[' + b" " * (8 * MIB) + b"]}"  # refused by Content-Length, drained: 413
        assert (await http.post("/v1/vitals", content=eight, headers=gateway.headers(DEVICE))).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # 6 MiB without Content-Length: 413 once past 1 MiB, drained
            for _ in range(96):
                yield b" " * 65536

        chunked = await http.post("/v1/vitals", content=chunks(), headers=gateway.headers(DEVICE))
        assert chunked.status_code == 413
        ten_mb = b'{"readings":[' + b" " * (10 * MIB) + b"]}"  # past the 8 MiB drained: 413 or the connection closed
        try:
            status = (await http.post("/v1/vitals", content=ten_mb, headers=gateway.headers(DEVICE))).status_code
        except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
            status = 0
        assert status in (413, 0)
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.post("/v1/vitals", content=GOOD_TEXT, headers=gateway.headers(DEVICE))).status_code == 202
