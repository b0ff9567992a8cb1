"""Test-only AWS fault injection through botocore event hooks (``VITALSTREAM_TEST_FAULTS``).

Faults no emulator produces, for the chaos campaign (``make chaos``) and its tests:

- ``kinesis=P``: a ``PutRecords`` call is throttled whole (``ProvisionedThroughputExceededException``)
  with probability P, otherwise each of its records fails alone with probability P (a partial failure:
  ``FailedRecordCount`` > 0, the failed entries carry an ``ErrorCode``; the others are really written);
  ``GetRecords`` is throttled with probability P.
- ``s3=P``: any S3 call answers ``500 InternalError`` or ``503 SlowDown`` with probability P.

The spec reads ``kinesis=0.3,s3=0.3`` (optionally ``seed=N``). A production process refuses it: faults are
installed only when every targeted service's endpoint (``AWS_ENDPOINT_URL_<SERVICE>`` or
``AWS_ENDPOINT_URL``) is on the loopback interface, i.e. the local stack is in use; anything else raises
:class:`FaultsRefused` at start-up.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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
    """What a ``before-call`` hook returns alongside the parsed body to short-circuit a botocore call."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""
        self.text = ""
        self.raw = None


def _error(status: int, code: str, message: str) -> tuple[_Response, dict[str, Any]]:
    return _Response(status), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
    }


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
            session.register("before-call.kinesis.PutRecords", self._short_circuit_put)
            session.register("after-call.kinesis.PutRecords", self._restore_failed_entries)
            session.register("before-call.kinesis.GetRecords", self._throttle_get)
            self.kinesis = kinesis
        if s3 := self.rates.get("s3"):
            session.register("before-call.s3", self._s3_error)
            self.s3 = s3

    def _count(self, what: str) -> None:
        self.injected[what] = self.injected.get(what, 0) + 1

    def _choose_put_failures(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        records = params.get("Records") or []
        if self.rng.random() < self.kinesis:
            context["fault_throttle"] = True
            return
        fails = [self.rng.random() < self.kinesis for _ in records]
        if not any(fails):
            return
        context["fault_fails"] = fails
        if not all(fails):  # the others go to the stream for real
            params["Records"] = [record for record, fail in zip(records, fails, strict=True) if not fail]

    def _short_circuit_put(self, context: dict[str, Any], **_: Any) -> tuple[_Response, dict[str, Any]] | None:
        if context.get("fault_throttle"):
            self._count("kinesis_put_throttled")
            return _error(400, THROTTLED, "Rate exceeded for stream (injected)")
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

    def _throttle_get(self, **_: Any) -> tuple[_Response, dict[str, Any]] | None:
        if self.rng.random() < self.kinesis:
            self._count("kinesis_get_throttled")
            return _error(400, THROTTLED, "Rate exceeded for shard (injected)")
        return None

    def _s3_error(self, **_: Any) -> tuple[_Response, dict[str, Any]] | None:
        if self.rng.random() < self.s3:
            self._count("s3_error")
            if self.rng.random() < 0.5:
                return _error(500, "InternalError", "We encountered an internal error (injected)")
            return _error(503, "SlowDown", "Please reduce your request rate (injected)")
        return None


def install_faults(session: Any, spec: str | None, environ: Mapping[str, str] | None = None) -> Faults | None:
    """Install the hooks of ``spec`` on ``session`` (before any client is created); refuse outside the local stack."""
    if not spec:
        return None
    rates, seed = parse_spec(spec)
    check_local(list(rates), os.environ if environ is None else environ)
    faults = Faults(rates, seed)
    faults.install(session)
    return faults
