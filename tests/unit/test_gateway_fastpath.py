"""service.fastpath agrees with the per-reading path; service.request_log writes what logger.info would."""

from __future__ import annotations

import io
import json
import logging
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from common.logging import JsonFormatter
from schemas.catalogue import METRICS
from schemas.wire import MESSAGE_ID_NAMESPACE, derive_message_id
from service.fastpath import _derived_id, fast_envelope
from service.normalise import build_records
from service.request_log import RequestIds, RequestLog
from service.validate import FUTURE_TOLERANCE_US, BodyError, ForeignDevice, parse_body, validate_readings

DEVICE = "dev-1"
PATIENT = "pat-1"
NOW_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z
GOOD: dict[str, Any] = {"device_id": DEVICE, "metric": "heart_rate", "value": 72, "measured_at": "2026-01-01T11:59:00Z"}


@given(
    device=st.text(min_size=1, max_size=64),
    metric=st.sampled_from(list(METRICS)),
    at=st.integers(-(2**60), 2**60),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
@example(device="dev-1", metric="heart_rate", at=0, value=-0.0)
def test_derived_id_is_derive_message_id(device: str, metric: str, at: int, value: float) -> None:
    prefix = MESSAGE_ID_NAMESPACE.bytes + device.encode() + b"|"
    assert _derived_id(prefix, metric, at, value) == derive_message_id(device, metric, at, value)
    assert _derived_id(prefix, metric, at, value) == str(
        uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{device}|{metric}|{at}|{value + 0.0!r}")
    )


def slow(items: list[Any], device_id: str = DEVICE) -> bytes | None:
    """The record of the per-reading path when it accepts every reading of one device, else None."""
    try:
        valid, rejected = validate_readings(items, device_id, NOW_US)
    except ForeignDevice:
        return None
    if rejected:
        return None
    records = build_records("req-1", NOW_US, valid, PATIENT)
    assert len(records) == 1
    return records[0].data


def fast(items: list[Any], device_id: str = DEVICE) -> bytes | None:
    return fast_envelope(items, device_id, PATIENT, "req-1", NOW_US, NOW_US + FUTURE_TOLERANCE_US)


def agree(body: Any, device_id: str = DEVICE) -> bytes | None:
    """Through real JSON bytes: the fast path answers only what the slow path answers, byte for byte."""
    try:
        items = parse_body(json.dumps(body).encode())  # stdlib json: integers past 64 bits, lone surrogates
    except BodyError:
        return None
    expected = slow(items, device_id)
    got = fast(items, device_id)
    if got is not None:
        assert got == expected
    return got


def _with_unit(raw: dict[str, Any]) -> dict[str, Any]:
    """Name the canonical unit when the metric is given by name (LOINC readings go without a unit)."""
    metric = METRICS.get(raw["metric"])
    return raw if metric is None else {**raw, "unit": metric.canonical_unit}


metric_keys = [key for metric in METRICS.values() for key in (metric.name, *metric.loinc_codes)]
units = sorted({unit for metric in METRICS.values() for unit in metric.units})
stamps = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    st.integers(1, 9999), st.integers(0, 13), st.integers(0, 32), st.sampled_from(["T", "t", " ", "_"]),
    st.integers(0, 24), st.integers(0, 60), st.integers(0, 60),
    st.sampled_from(["", ".5", ".250", ".123456", ".123456789", ".1234567891"]),
    st.sampled_from(["Z", "z", "+02:00", "-05:30", "+23:59", "+24:00", "+0100", "", "Z\n"]),
)  # fmt: skip
valid_readings = st.fixed_dictionaries(
    {
        "device_id": st.just(DEVICE),
        "metric": st.sampled_from(metric_keys),
        "value": st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False)),
        "measured_at": st.builds(
            "2026-01-01T{:02d}:{:02d}:{:02d}{}Z".format,
            st.integers(0, 11),
            st.integers(0, 59),
            st.integers(0, 59),
            st.sampled_from(["", ".5", ".123456"]),
        ),
    },
    optional={
        "patient_id": st.sampled_from([None, "pat-2", "p.3:x_y-z"]),
        "message_id": st.one_of(st.none(), st.uuids().map(str), st.text(min_size=1, max_size=128)),
    },
).map(_with_unit)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4), st.sampled_from([DEVICE, "dev-2", "bad id", "x" * 65, "", "m" * 129, *metric_keys, *units]),
    stamps, st.just([]), st.just({}),
)  # fmt: skip
fields = st.sampled_from(["device_id", "patient_id", "message_id", "metric", "value", "unit", "measured_at", "extra"])


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    raw = dict(draw(valid_readings))
    for field, value in draw(st.dictionaries(fields, anything, max_size=2)).items():
        raw[field] = value
    for field in draw(st.sets(fields, max_size=1)):
        raw.pop(field, None)
    return raw


@settings(max_examples=300, deadline=None)
@given(readings=st.lists(valid_readings, min_size=1, max_size=30))
def test_valid_requests_take_the_fast_path_with_the_same_envelope(readings: list[dict[str, Any]]) -> None:
    assert agree({"readings": readings}) is not None


@settings(max_examples=1500, deadline=None)
@given(readings=st.lists(st.one_of(valid_readings, mutated(), anything), min_size=1, max_size=6))
@example(readings=[{**GOOD, "value": -0.0}])
@example(readings=[{**GOOD, "metric": "bp_systolic", "unit": "kPa", "value": 1e308}])
@example(readings=[{**GOOD, "measured_at": "2026-01-01T12:05:00.000001Z"}])
@example(readings=[{**GOOD, "measured_at": "٢٠٢٦-01-01T11:59:00Z"}])
@example(readings=[{**GOOD, "measured_at": "2026-01-01T11:59:00Z\x002026-01-01T11:59:00Z"}])
@example(readings=[{**GOOD, "measured_at": "0001-01-01T00:00:00+01:00"}])
@example(readings=[{**GOOD, "value": True}])
@example(readings=[{**GOOD, "metric": ["heart_rate"]}])
@example(readings=[{**GOOD, "patient_id": ["p"]}])
def test_the_fast_path_never_answers_differently(readings: list[Any]) -> None:
    agree({"readings": readings})
    if len(readings) == 1 and type(readings[0]) is dict and "readings" not in readings[0]:
        agree(readings[0])


odd_stamps = st.one_of(
    stamps,
    st.sampled_from([
        "2026-01-01T11:59:00", "2026-01-01T11:59:00+0100", "2026-01-01T11:59Z", "2026-01-01T11Z", "2026-01-01",
        "20260101T115900Z", "2026-W01-1T11:59:00Z", "2026-01-01T11:59:00,5Z", "2026-01-01T11:59:00+01:00:00",
        "2026-01-01T11:59:00.Z", "2026-01-01T11:59:00 Z", " 2026-01-01T11:59:00Z", "2026-001T11:59:00Z",
    ]),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(stamp=odd_stamps)
@example(stamp="2026-01-01T11:59:00")
@example(stamp="2026-01-01T11:59:00+0100")
def test_timestamps_agree(stamp: str) -> None:
    agree({"readings": [{**GOOD, "measured_at": stamp}]})


@pytest.mark.parametrize(
    ("changes", "taken"),
    [
        ({}, True),
        ({"measured_at": "2026-01-01 13:00:00.123456789+01:00"}, True),
        ({"measured_at": "2026-01-01t11:59:00z"}, True),
        ({"metric": "8310-5", "unit": "[degF]", "value": 98.6}, True),
        ({"metric": "glucose", "unit": "mmol/L", "value": 5.5}, True),
        ({"unit": None, "patient_id": None, "message_id": None}, True),
        ({"value": -0.0}, True),
        ({"value": 72.0, "message_id": "m" * 128}, True),
        ({"message_id": ""}, False),
        ({"message_id": "m" * 129}, False),
        ({"patient_id": "p/1"}, False),
        ({"device_id": "dev-2"}, False),
        ({"extra": 1}, False),
        ({"unit": "kPa"}, False),
        ({"measured_at": "2026-01-01T12:05:01Z"}, False),
        ({"measured_at": "2026-02-30T00:00:00Z"}, False),
        ({"value": "72"}, False),
    ],
)
def test_fast_path_cases(changes: dict[str, Any], taken: bool) -> None:
    raw = {**GOOD, **changes}
    assert (agree({"readings": [raw, GOOD]}) is not None) is taken


def test_a_malformed_authenticated_device_id_is_left_to_the_slow_path() -> None:
    assert agree({"readings": [{**GOOD, "device_id": "bad id"}]}, device_id="bad id") is None


def test_derived_message_ids_match_the_reference() -> None:
    data = fast([{**GOOD, "metric": "8867-4", "unit": "bpm", "value": 72}])
    assert data is not None
    envelope = orjson.loads(data)
    from schemas.wire import derive_message_id

    expected = derive_message_id(DEVICE, "heart_rate", NOW_US - 60_000_000, 72.0)
    assert envelope["readings"]["message_id"] == [str(expected)]
    assert envelope["readings"]["patient_id"] == [PATIENT]


def test_request_ids_are_distinct_uuid4() -> None:
    ids = RequestIds()
    drawn = [ids.next() for _ in range(1500)]  # crosses a block boundary
    assert len(set(drawn)) == len(drawn)
    for text in drawn:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


CONTEXT = {"request_id": "r-1", "status": 202, "devices": 1, "accepted": 3, "rejected": 0, "duration_ms": 0.5}


def test_request_log_writes_the_json_formatter_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.request_log.json")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    RequestLog(logger).emit(CONTEXT)
    logger.info("request", extra=CONTEXT)
    fast_line, reference = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert fast_line.pop("ts")[:19] == reference.pop("ts")[:19]
    assert fast_line == reference
    logger.setLevel(logging.WARNING)
    RequestLog(logger).emit(CONTEXT)
    assert len(stream.getvalue().splitlines()) == 2


def test_request_log_hands_other_handlers_a_full_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.request_log.caplog")
    with caplog.at_level(logging.INFO, logger=logger.name):
        RequestLog(logger).emit(CONTEXT)
        logger.info("request", extra=CONTEXT)
    fast_record, reference = caplog.records
    assert fast_record.getMessage() == "request"
    for key, value in vars(reference).items():
        if key not in {"created", "msecs", "relativeCreated", "lineno"}:
            assert getattr(fast_record, key) == value, key
    assert fast_record.funcName == reference.funcName == "test_request_log_hands_other_handlers_a_full_record"
