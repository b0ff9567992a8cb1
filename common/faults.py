"""Test-only AWS fault injection through botocore event hooks (``VITALSTREAM_TEST_FAULTS``).

Faults no emulator produces, for the chaos campaign (``make chaos``) and its tests:

- ``kinesis=P``: each attempt of a ``PutRecords`` or ``GetRecords`` call is throttled whole
  (``400 ProvisionedThroughputExceededException``) with probability P; otherwise each record of a
  ``PutRecords`` call fails alone with probability P (a partial failure: ``FailedRecordCount`` > 0, the failed
  entries carry an ``ErrorCode``; the others are really written).
- ``s3=P``: each attempt of any S3 call answers ``500 InternalError`` or ``503 SlowDown`` with probability P.

Whole-call errors are answered at ``before-send``, in place of the HTTP exchange, so they go through botocore's
parsing and retry handler exactly as errors from AWS do (a client with ``max_attempts=3`` retries them).

The spec reads ``kinesis=0.3,s3=0.3`` (optionally ``seed=N``). A production process refuses it: faults are
installed only when every targeted service's endpoint (``AWS_ENDPOINT_URL_<SERVICE>`` or
``AWS_ENDPOINT_URL``) is on the loopback interface, i.e. the local stack is in use; anything else raises
:class:`FaultsRefused` at start-up.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.awsrequest import AioAWSResponse
from botocore.compat import HTTPHeaders

SERVICES = ("kinesis", "s3")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class FaultsRefused(RuntimeError):
    """Fault injection was asked for outside the local stack."""


def parse_spec(spec: str) -> tuple[dict[str, float], int | None]:
    """``kinesis=0.3,s3=0.3[,seed=N]`` → ({service: probability}, seed)."""
    rates: dict[str, float] = {}
    seed: int | None = None
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"fault spec part {part!r} is not NAME=VALUE")
        if name == "seed":
            seed = int(value)
            continue
        if name not in SERVICES:
            raise ValueError(f"unknown fault target {name!r} (known: {', '.join(SERVICES)}, seed)")
        rate = float(value)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"fault probability of {name} must be in [0, 1)")
        rates[name] = rate
    return rates, seed


def check_local(services: list[str], environ: Mapping[str, str]) -> None:
    """Raise :class:`FaultsRefused` unless every service's endpoint is on the loopback interface."""
    for service in services:
        url = environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or environ.get("AWS_ENDPOINT_URL")
        host = urlsplit(url).hostname if url else None
        if host not in LOOPBACK_HOSTS:
            raise FaultsRefused(
                f"VITALSTREAM_TEST_FAULTS is for the local stack only: the {service} endpoint is "
                f"{host or 'AWS itself'}, not the loopback interface; unset it"
            )


class _Response:
    """What a ``before-call`` hook returns alongside the parsed body to short-circuit a botocore call
    (a PutRecords call all of whose records fail: nothing is sent, the answer is a 200 with every entry failed)."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""
        self.raw = None


class _Body:
    """The raw body of an injected HTTP response (what aiobotocore reads)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, *_: Any) -> bytes:
        data, self.data = self.data, b""
        return data


def _http_error(request: Any, status: int, body: bytes, content_type: str) -> AioAWSResponse:
    headers = HTTPHeaders()
    for name, value in (("Content-Type", content_type), ("Content-Length", str(len(body))),
                        ("x-amzn-RequestId", "injected")):  # fmt: skip
        headers[name] = value
    return AioAWSResponse(request.url, status, headers, _Body(body))


def _kinesis_throttle(request: Any) -> AioAWSResponse:
    body = b'{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded (injected)"}'
    return _http_error(request, 400, body, "application/x-amz-json-1.1")


def _s3_error(request: Any, code: str, status: int) -> AioAWSResponse:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        f"<Message>injected</Message><RequestId>injected</RequestId></Error>"
    ).encode()
    return _http_error(request, status, body, "application/xml")


THROTTLED = "ProvisionedThroughputExceededException"


class Faults:
    """The hooks of one spec; :meth:`install` registers them on a botocore/aiobotocore session."""

    def __init__(self, rates: dict[str, float], seed: int | None = None) -> None:
        self.rates = rates
        self.rng = random.Random(seed)
        self.injected: dict[str, int] = {}

    def install(self, session: Any) -> None:
        if kinesis := self.rates.get("kinesis"):
            session.register("before-parameter-build.kinesis.PutRecords", self._choose_put_failures)
            session.register("before-call.kinesis.PutRecords", self._all_records_failed)
            session.register("after-call.kinesis.PutRecords", self._restore_failed_entries)
            session.register("before-send.kinesis.PutRecords", self._throttle)
            session.register("before-send.kinesis.GetRecords", self._throttle)
            self.kinesis = kinesis
        if s3 := self.rates.get("s3"):
            session.register("before-send.s3", self._s3_fail)
            self.s3 = s3

    def _count(self, what: str) -> None:
        self.injected[what] = self.injected.get(what, 0) + 1

    def _choose_put_failures(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        records = params.get("Records") or []
        fails = [self.rng.random() < self.kinesis for _ in records]
        if not any(fails):
            return
        context["fault_fails"] = fails
        if not all(fails):  # the others go to the stream for real
            params["Records"] = [record for record, fail in zip(records, fails, strict=True) if not fail]

    def _all_records_failed(self, context: dict[str, Any], **_: Any) -> tuple[_Response, dict[str, Any]] | None:
        fails = context.get("fault_fails")
        if fails and all(fails):
            self._count("kinesis_put_partial")
            entries = [{"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded (injected)"} for _ in fails]
            return _Response(200), {"FailedRecordCount": len(fails), "Records": entries}
        return None

    def _restore_failed_entries(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        fails = context.get("fault_fails")
        if not fails or all(fails) or "Records" not in parsed:
            return
        self._count("kinesis_put_partial")
        written = iter(parsed["Records"])
        parsed["Records"] = [
            {"ErrorCode": THROTTLED, "ErrorMessage": "Rate exceeded (injected)"} if fail else next(written)
            for fail in fails
        ]
        parsed["FailedRecordCount"] = int(parsed.get("FailedRecordCount", 0)) + sum(fails)

    def _throttle(self, request: Any, **_: Any) -> AioAWSResponse | None:
        if self.rng.random() < self.kinesis:
            self._count("kinesis_throttled")
            return _kinesis_throttle(request)
        return None

    def _s3_fail(self, request: Any, **_: Any) -> AioAWSResponse | None:
        if self.rng.random() < self.s3:
            self._count("s3_error")
            if self.rng.random() < 0.5:
                return _s3_error(request, "InternalError", 500)
            return _s3_error(request, "SlowDown", 503)
        return None


def install_faults(session: Any, spec: str | None, environ: Mapping[str, str] | None = None) -> Faults | None:
    """Install the hooks of ``spec`` on ``session`` (before any client is created); refuse outside the local stack."""
    if not spec:
        return None
    rates, seed = parse_spec(spec)
    check_local(list(rates), os.environ if environ is None else environ)
    faults = Faults(rates, seed)
    faults.install(session)
    logging.getLogger(__name__).warning("test fault injection is on (VITALSTREAM_TEST_FAULTS): local stack only")
    return faults
