"""service.fastpath (both of its paths) agrees with the per-reading path; service.request_log writes what
logger.info would."""

from __future__ import annotations

import asyncio
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
from service._fastpath import message_id
from service.fastpath import fast_body_envelope, fast_envelope
from service.normalise import build_records
from service.request_log import FLUSH_SECONDS, RequestIds, RequestLog
from service.validate import FUTURE_TOLERANCE_US, BodyError, ForeignDevice, parse_body, validate_readings

DEVICE = "dev-1"
PATIENT = "pat-1"
NOW_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z
GOOD: dict[str, Any] = {"device_id": DEVICE, "metric": "heart_rate", "value": 72, "measured_at": "2026-01-01T11:59:00Z"}


@given(
    device=st.text(min_size=1, max_size=64),
    metric=st.sampled_from(list(METRICS)),
    at=st.integers(-(2**63), 2**63 - 1),
    value=st.floats(allow_nan=False, allow_infinity=False),
)
@example(device="dev-1", metric="heart_rate", at=0, value=-0.0)
@example(device="dev-1", metric="heart_rate", at=-1, value=1e16)
@example(device="dev-1", metric="heart_rate", at=-(2**63), value=9999999999999998.0)
@example(device="dev-1", metric="heart_rate", at=2**63 - 1, value=-(2.0**53))
@example(device="dev-1", metric="heart_rate", at=7, value=-1e15 - 1)
def test_derived_id_is_derive_message_id(device: str, metric: str, at: int, value: float) -> None:
    prefix = MESSAGE_ID_NAMESPACE.bytes + device.encode() + b"|"
    assert message_id(prefix, metric, at, value) == derive_message_id(device, metric, at, value)
    assert message_id(prefix, metric, at, value) == str(
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


def canonical(envelope: bytes) -> bytes:
    """An envelope's JSON re-encoded by orjson: equal for equal content, -0.0 and 0.0 told apart."""
    return orjson.dumps(orjson.loads(envelope))


def agree_body(raw: bytes, device_id: str = DEVICE) -> tuple[bytes, int] | None:
    """The body fast path answers only what parse_body + the slow path answer, with the same envelope."""
    got = fast_body_envelope(raw, device_id, PATIENT, "req-1", NOW_US, NOW_US + FUTURE_TOLERANCE_US)
    if got is None:
        return None
    items = parse_body(raw)  # a BodyError here is a disagreement
    expected = slow(items, device_id)
    assert expected is not None, raw
    assert canonical(got[0]) == canonical(expected), raw
    assert got[1] == len(items)
    return got


def agree(body: Any, device_id: str = DEVICE) -> bytes | None:
    """Through real JSON bytes: the fast paths answer only what the slow path answers, byte for byte."""
    raw = json.dumps(body).encode()  # stdlib json: integers past 64 bits, lone surrogates
    from_body = agree_body(raw, device_id)
    try:
        items = parse_body(raw)
    except BodyError:
        assert from_body is None
        return None
    expected = slow(items, device_id)
    got = fast(items, device_id)
    if got is not None:
        assert got == expected
    if from_body is not None:
        assert got is not None
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


# -- the body path on raw bytes: spacing, key order, number spellings, escapes, broken JSON ----------------

spaces = st.sampled_from(["", " ", "\n", "\t", "\r\n  "])
ascii_ids = st.one_of(
    st.uuids().map(str),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), min_size=1, max_size=128),
)
plain_readings = st.fixed_dictionaries(
    {
        "device_id": st.just(DEVICE),
        "metric": st.sampled_from(metric_keys),
        "value": st.one_of(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False)),
        "measured_at": valid_readings.map(lambda raw: raw["measured_at"]),
    },
    optional={"patient_id": st.sampled_from([None, "pat-2", "p.3:x_y-z"]), "message_id": st.none() | ascii_ids},
).map(_with_unit)
odd_values = st.sampled_from([
    "01", "1.", ".5", "+1", "-", "1e", "0x10", "NaN", "Infinity", "-Infinity", "true", "false", "[]", "{}",
    '"72"', "1e400", "-1e400", "1e-400", "123456789012345678901234567890", "9223372036854775807",
    "18446744073709551615", "-9223372036854775808", "999999999999999999", "nul", "null1", '"\\ud800"',
    '"a\\"b"', '"\x01"', '"\xc3\xa9"', "1.7976931348623157e308", "4.9e-324", "-0", "-0.0", "0e0", "1E+2",
    '"dev\\u002d1"', '"heart\\u005frate"', '"2026-01-01T11:59:00Z"', '"kPa"', "null",
])  # fmt: skip


@st.composite
def raw_value(draw: st.DrawFn, value: Any, odd: bool = True) -> str:
    """One JSON spelling of ``value``: other number forms of the same number, escapes, or (``odd``) odd text."""
    if odd and draw(st.integers(0, 20)) == 0:
        return draw(odd_values)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=draw(st.booleans()))
        if "-" in value and draw(st.integers(0, 5)) == 0:
            text = text.replace("-", "\\u002d", 1)
        return text
    if type(value) is int:
        return draw(st.sampled_from([str(value), f"{value}.0", f"{value}e0", f"{value}E+00", f"{value}.000e-0"]))
    if type(value) is float:
        return draw(st.sampled_from([repr(value), repr(value).upper(), json.dumps(value)]))
    return json.dumps(value)


@st.composite
def raw_object(draw: st.DrawFn, reading: dict[str, Any], odd: bool = True) -> str:
    pairs = [(json.dumps(key), draw(raw_value(value, odd))) for key, value in reading.items()]
    pairs = list(draw(st.permutations(pairs)))
    if odd and pairs and draw(st.integers(0, 15)) == 0:  # a repeated key
        pairs.append((pairs[0][0], draw(raw_value(reading[json.loads(pairs[0][0])]))))
    if odd and draw(st.integers(0, 15)) == 0:
        pairs.append(('"extra"', "1"))
    members = (f"{draw(spaces)}{key}{draw(spaces)}:{draw(spaces)}{text}{draw(spaces)}" for key, text in pairs)
    return "{" + ",".join(members) + "}"


@st.composite
def raw_bodies(draw: st.DrawFn, readings: st.SearchStrategy[dict[str, Any]], odd: bool = True) -> bytes:
    objects = [draw(raw_object(reading, odd)) for reading in draw(st.lists(readings, min_size=1, max_size=8))]
    sep = draw(spaces)
    form = draw(st.integers(0, 12)) if odd else 3
    if form == 0:
        body = objects[0]  # one reading
    elif form == 1:
        body = '{"readings":[]}'
    elif form == 2:
        body = '{"readings":[' + ",".join(objects) + '],"more":1}'
    else:
        body = "{" + sep + '"readings"' + sep + ":" + sep + "[" + f"{sep},{sep}".join(objects) + sep + "]" + sep + "}"
    tails = st.sampled_from(["", " ", "\n", "x", "{}", ","])
    tail = draw(tails) if odd and draw(st.integers(0, 10)) == 0 else ""
    return (draw(spaces) + body + sep + tail).encode()


@settings(max_examples=1500, deadline=None)
@given(raw=raw_bodies(st.one_of(valid_readings, plain_readings, mutated())))
@example(
    raw=b'{"readings":[{"device_id":"dev-1","metric":"heart_rate","value":72,"measured_at":"2026-01-01T11:59:00Z"}]}'
)
@example(raw=b'{"device_id":"dev-1","metric":"heart_rate","value":-0.0,"measured_at":"2026-01-01T11:59:00Z"}')
@example(raw=b'{"device_id":"dev-1","metric":"heart_rate","value":1e16,"measured_at":"2026-01-01T11:59:00Z"}')
@example(raw=b'{"device_id":"dev-1","metric":"heart_rate","value":72,"measured_at":"2026-01-01T11:59:00Z"}}')
@example(raw=b'{"device_id":"dev-1","metric":"heart_rate","value":72,"measured_at":"2026-01-01T11:59:00Z"')
@example(
    raw=b'{"readings":[{"device_id":"dev-1","metric":"heart_rate","value":72,"measured_at":"2026-01-01T11:59:00Z"},]}'
)
def test_the_body_path_never_answers_differently(raw: bytes) -> None:
    agree_body(raw)


@settings(max_examples=500, deadline=None)
@given(raw=raw_bodies(plain_readings, odd=False))
def test_plain_spellings_take_the_body_path_with_the_same_envelope(raw: bytes) -> None:
    assert (agree_body(raw) is not None) is (b"\\" not in raw)  # escapes are left to orjson


@settings(max_examples=300, deadline=None)
@given(readings=st.lists(plain_readings, min_size=1, max_size=30), sep=spaces)
def test_plain_valid_bodies_take_the_body_path(readings: list[dict[str, Any]], sep: str) -> None:
    raw = json.dumps({"readings": readings}, separators=(f"{sep},", f":{sep}")).encode()
    assert agree_body(raw) is not None


def test_the_body_path_limits() -> None:
    one = {**GOOD, "unit": "/min"}
    assert agree_body(orjson.dumps({"readings": [one] * 1000})) is not None
    assert fast_body_envelope(orjson.dumps({"readings": [one] * 1001}), DEVICE, PATIENT, "r", NOW_US, NOW_US) is None
    big = {**GOOD, "message_id": "m" * 128}
    many = orjson.dumps({"readings": [{**big, "measured_at": f"2026-01-01T{i // 60 % 12:02d}:{i % 60:02d}:00Z"}
                                      for i in range(1000)]})  # fmt: skip
    found = agree_body(many)
    assert found is not None
    assert found[1] == 1000


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


async def test_request_log_buffers_lines_inside_a_running_loop() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.request_log.buffered")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log = RequestLog(logger)
    log.emit(CONTEXT)
    log.emit({**CONTEXT, "request_id": "r-2"})
    assert stream.getvalue() == ""  # held, written together
    await asyncio.sleep(FLUSH_SECONDS + 0.25)
    assert [orjson.loads(line)["request_id"] for line in stream.getvalue().splitlines()] == ["r-1", "r-2"]
    log.emit({**CONTEXT, "request_id": "r-3"})
    log.flush()  # what the app's shutdown does
    assert len(stream.getvalue().splitlines()) == 3
    for index in range(2000):  # a full buffer is written at once
        log.emit({**CONTEXT, "request_id": f"r-{index}"})
    assert len(stream.getvalue().splitlines()) > 3
    log.flush()
    assert len(stream.getvalue().splitlines()) == 2003


PLAIN = orjson.dumps(
    {"readings": [{**GOOD, "unit": "/min", "message_id": "m-1"}, {**GOOD, "metric": "8310-5", "value": 98.6}]}
)


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid body with bytes overwritten, inserted, deleted or cut off: the parser's edges."""
    data = bytearray(draw(st.sampled_from([PLAIN, orjson.dumps(GOOD), b'{"readings":[]}'])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.integers(0, 3))
        byte = draw(st.sampled_from([*b'{}[]",:.-+eE0123456789 \\\t\nnulxZT', 0, 0x80, 0xC3, 0xFF]))
        if action == 0 and at < len(data):
            data[at] = byte
        elif action == 1:
            data.insert(at, byte)
        elif action == 2 and at < len(data):
            del data[at]
        else:
            del data[at:]
    return bytes(data)


@settings(max_examples=3000, deadline=None)
@given(raw=st.one_of(damaged(), st.binary(max_size=64)))
def test_damaged_bodies_are_refused_or_read_as_orjson_reads_them(raw: bytes) -> None:
    try:
        agree_body(raw)
    except BodyError:
        pytest.fail(f"the body path took a body orjson refuses: {raw!r}")
