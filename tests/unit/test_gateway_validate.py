"""service.validate: every reject code, body errors, device coverage, agreement with schemas.wire.Reading."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.wire import DEVICE_ID_PATTERN, Reading
from service.validate import BodyError, ForeignDevice, ValidReading, parse_body, validate_readings

DEVICE = "dev-1"
NOW_US = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z
GOOD: dict[str, Any] = {"device_id": DEVICE, "metric": "heart_rate", "value": 72, "measured_at": "2026-01-01T11:59:00Z"}


def check(**changes: Any) -> ValidReading | str:
    raw = {**GOOD, **changes}
    raw = {k: v for k, v in raw.items() if v is not ...}
    valid, rejected = validate_readings([raw], DEVICE, NOW_US)
    return valid[0] if valid else rejected[0].code


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"value": ...}, "missing_field"),
        ({"device_id": ...}, "missing_field"),
        ({"measured_at": ...}, "missing_field"),
        ({"colour": "red"}, "extra_field"),
        ({"value": "72"}, "invalid_type"),
        ({"value": True}, "invalid_type"),
        ({"value": None}, "invalid_type"),
        ({"metric": 5}, "invalid_type"),
        ({"unit": 5}, "invalid_type"),
        ({"measured_at": 1_700_000_000}, "invalid_type"),
        ({"device_id": 7}, "invalid_type"),
        ({"patient_id": 7}, "invalid_type"),
        ({"message_id": 7}, "invalid_type"),
        ({"value": 10**400}, "invalid_value"),  # too large for a float: OverflowError in the conversion
        ({"metric": "weight"}, "unknown_metric"),
        ({"metric": "Heart_Rate"}, "unknown_metric"),
        ({"unit": "kPa"}, "unknown_unit"),
        ({"unit": "BPM"}, "unknown_unit"),
        ({"device_id": "bad id"}, "invalid_value"),
        ({"device_id": "x" * 65}, "invalid_value"),
        ({"device_id": "dev\n"}, "invalid_value"),
        ({"patient_id": "p/1"}, "invalid_value"),
        ({"message_id": ""}, "invalid_value"),
        ({"message_id": "m" * 129}, "invalid_value"),
        ({"metric": "bp_systolic", "unit": "kPa", "value": 1e308}, "invalid_value"),
        ({"measured_at": "2026-01-01T11:59:00"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T11:59:00+0100"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01"}, "invalid_timestamp"),
        ({"measured_at": "2026-02-30T00:00:00Z"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T11:59:00Z\n"}, "invalid_timestamp"),
        ({"measured_at": "yesterday"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T12:05:01Z"}, "future_timestamp"),
        ({"measured_at": "2026-01-01T14:05:01+02:00"}, "future_timestamp"),
        # RFC 3339 exactly: offsets HH <= 23, MM <= 59, ASCII digits only (fraction included)
        ({"measured_at": "2026-01-01T00:00:00+00:99"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T00:00:00-05:60"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T00:00:00+24:00"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T00:00:00.1234567\u0662+00:00"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T00:00:00.\u0661Z"}, "invalid_timestamp"),
        ({"measured_at": "\u0662026-01-01T00:00:00Z"}, "invalid_timestamp"),
        ({"measured_at": "2026-01-01T00:00:00\uff0b01:00"}, "invalid_timestamp"),
        # older than the maximum reading age (default 30 days)
        ({"measured_at": "0001-01-01T00:00:00Z"}, "stale_timestamp"),
        ({"measured_at": "1970-01-01T00:00:00Z"}, "stale_timestamp"),
        ({"measured_at": "2025-12-02T11:59:59.999999Z"}, "stale_timestamp"),
        ({"measured_at": "2025-12-02T13:59:59.999999+02:00"}, "stale_timestamp"),
    ],
)
def test_reject_codes(changes: dict[str, Any], code: str) -> None:
    assert check(**changes) == code


def test_valid_readings_are_canonical() -> None:
    temp = check(metric="8310-5", value=98.6, unit="[degF]", measured_at="2026-01-01T13:00:00.5+02:00")
    assert isinstance(temp, ValidReading)
    assert temp.metric.name == "body_temp"
    assert temp.value == pytest.approx(37.0)
    assert temp.measured_at_us == NOW_US - 3_600_000_000 + 500_000
    edge = check(measured_at="2026-01-01t12:05:00z", patient_id=None, message_id=None, unit=None)
    assert isinstance(edge, ValidReading)
    assert edge.value == 72.0
    assert isinstance(edge.value, float)
    assert isinstance(check(metric="glucose", unit="mmol/L", value=5.5), ValidReading)
    assert isinstance(check(measured_at="2026-01-01T00:00:00+23:59"), ValidReading)
    assert isinstance(check(measured_at="2025-12-25T00:00:00-00:59"), ValidReading)


def test_the_maximum_reading_age_is_a_bound_in_microseconds() -> None:
    oldest = check(measured_at="2025-12-02T12:00:00Z")  # exactly 30 days before NOW_US
    assert isinstance(oldest, ValidReading)
    assert oldest.measured_at_us == NOW_US - 30 * 86_400_000_000
    hour = 3_600_000_000
    raw = {**GOOD, "measured_at": "2026-01-01T10:59:59Z"}
    _, rejected = validate_readings([raw], DEVICE, NOW_US, max_age_us=hour)
    assert [r.code for r in rejected] == ["stale_timestamp"]
    valid, _ = validate_readings([{**raw, "measured_at": "2026-01-01T11:00:00Z"}], DEVICE, NOW_US, max_age_us=hour)
    assert len(valid) == 1


def test_a_reading_that_is_not_an_object_and_partial_results() -> None:
    valid, rejected = validate_readings([GOOD, 3, [], {**GOOD, "unit": "x"}], DEVICE, NOW_US)
    assert [r.index for r in valid] == [0]
    assert [(r.index, r.code) for r in rejected] == [(1, "invalid_type"), (2, "invalid_type"), (3, "unknown_unit")]
    assert "x" not in rejected[2].message.split("(")[0]  # values are not echoed


def test_another_device_is_forbidden_even_next_to_bad_readings() -> None:
    with pytest.raises(ForeignDevice):
        validate_readings([{"device_id": "dev-2"}, GOOD], DEVICE, NOW_US)
    # a malformed device id is a per-reading invalid_value, not a 403
    _, rejected = validate_readings([{**GOOD, "device_id": "dev 2"}], DEVICE, NOW_US)
    assert rejected[0].code == "invalid_value"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"{", 400),
        (b"[]", 400),
        (b"null", 400),
        (b'{"readings": 1}', 400),
        (b'{"readings": []}', 400),
        (b'{"readings": [], "more": 1}', 400),
        (orjson.dumps({"readings": [GOOD] * 1001}), 413),
    ],
)
def test_body_errors(body: bytes, status: int) -> None:
    with pytest.raises(BodyError) as error:
        parse_body(body)
    assert error.value.status == status


def test_body_shapes() -> None:
    assert parse_body(orjson.dumps(GOOD)) == [GOOD]
    assert parse_body(orjson.dumps({"readings": [GOOD, 1]})) == [GOOD, 1]


values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3), st.just("dev-1"), st.just("x" * 70), st.just("2026-01-01T10:00:00Z"),
    st.just("2026-01-01T10:00:00+0100"), st.just("2026-01-01 10:00:00.123456789-05:30"), st.just([]),
)  # fmt: skip
fields = st.sampled_from(["device_id", "patient_id", "message_id", "metric", "value", "unit", "measured_at", "other"])


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(fields, values, max_size=3), drop=st.sets(fields, max_size=2))
def test_agrees_with_the_pydantic_model_on_well_formedness(changes: dict[str, Any], drop: set[str]) -> None:
    """Whatever the strict ``schemas.wire.Reading`` refuses we refuse with its code, and vice versa.

    The catalogue and the clock are ours alone, so metric/unit/future checks are neutralised here.
    """
    raw = {**GOOD, **changes}
    for field in drop:
        raw.pop(field, None)
    try:
        Reading.model_validate_json(orjson.dumps(raw))
        model_ok = True
    except pydantic.ValidationError:
        model_ok = False
    try:
        valid, rejected = validate_readings([raw], DEVICE, 2**62, max_age_us=2**63)  # any age
    except ForeignDevice:  # 403 whatever else is wrong, but only for a well-formed id of another device
        assert raw["device_id"] != DEVICE
        assert re.fullmatch(DEVICE_ID_PATTERN, raw["device_id"])
        return
    semantic = {"unknown_metric", "unknown_unit"}
    if rejected and rejected[0].code in semantic:
        return
    assert bool(valid) == model_ok, (raw, rejected)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{", 400, "body is not valid JSON"),
        (b"[1]", 400, 'body must be a JSON object: one reading or {"readings": [...]}'),
        (b'{"readings": [{}], "x": 1}', 400, 'a batch object has the single key "readings"'),
        (b'{"readings": []}', 400, '"readings" must be a list of 1 to 1000 readings'),
        (b'{"readings": ' + orjson.dumps([{}] * 1001) + b"}", 413, "more than 1000 readings in one request"),
    ],
)
def test_each_body_error_says_what_is_wrong(body: bytes, status: int, detail: str) -> None:
    with pytest.raises(BodyError) as raised:
        parse_body(body)
    assert (raised.value.status, raised.value.detail) == (status, detail)


def test_exactly_the_maximum_number_of_readings_is_accepted() -> None:
    assert len(parse_body(b'{"readings": ' + orjson.dumps([{}] * 1000) + b"}")) == 1000


TEMP_UNITS = "Cel, [degF], degF, °F, °C, degC"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "a reading must be a JSON object"),
        ({**GOOD, "b": 1, "a": 1, "f": 1, "e": 1, "d": 1, "c": 1}, "unknown field(s): a, b, c, d, e"),
        ({**GOOD, "k" * 70: 1}, f"unknown field(s): {'k' * 64}"),
        ({**GOOD, 5: 1}, "unknown field(s): 5"),
        ({k: v for k, v in GOOD.items() if k != "metric"}, "metric is required"),
        ({**GOOD, "device_id": 7}, "device_id must be a string"),
        ({**GOOD, "device_id": "bad id"}, f"device_id must match {DEVICE_ID_PATTERN}"),
        ({**GOOD, "patient_id": 7}, "patient_id must be a string"),
        ({**GOOD, "patient_id": "p/1"}, f"patient_id must match {DEVICE_ID_PATTERN}"),
        ({**GOOD, "message_id": 7}, "message_id must be a string"),
        ({**GOOD, "message_id": ""}, "message_id must have 1 to 128 characters"),
        ({**GOOD, "metric": 5}, "metric must be a string"),
        ({**GOOD, "metric": [1]}, "metric must be a string"),  # unhashable: never looked up
        ({**GOOD, "unit": ["x"]}, "unit must be a string"),
        ({**GOOD, "metric": "weight"}, "metric is not a catalogue metric name or LOINC code"),
        ({**GOOD, "metric": "body_temp", "unit": 5}, "unit must be a string"),
        ({**GOOD, "metric": "8310-5", "unit": "K"}, f"unit not accepted for body_temp (accepted: {TEMP_UNITS})"),
        ({**GOOD, "value": "72"}, "value must be a JSON number"),
        ({**GOOD, "measured_at": 5}, "measured_at must be an RFC 3339 string"),
        ({**GOOD, "measured_at": "yesterday"}, "measured_at must be RFC 3339 with an offset (Z or ±hh:mm)"),
        ({**GOOD, "measured_at": "2026-01-01T12:05:01Z"}, "measured_at is more than 5 minutes in the future"),
        ({**GOOD, "measured_at": "1970-01-01T00:00:00Z"}, "measured_at is older than the maximum reading age"),
        (
            {**GOOD, "metric": "bp_systolic", "unit": "kPa", "value": 1e308},
            "value must be a finite number in the canonical unit",
        ),
    ],
)
def test_each_rejection_has_its_exact_message_and_index(raw: Any, message: str) -> None:
    valid, rejected = validate_readings([GOOD, raw], DEVICE, NOW_US)
    assert [v.index for v in valid] == [0]
    assert [(r.index, r.message) for r in rejected] == [(1, message)]


@pytest.mark.parametrize("message_id", ["m", "m" * 128])
def test_message_id_of_1_to_128_characters(message_id: str) -> None:
    result = check(message_id=message_id)
    assert isinstance(result, ValidReading)
    assert result.message_id == message_id


def test_units_convert_by_name_and_by_loinc_code() -> None:
    for metric in ("body_temp", "8310-5"):
        result = check(metric=metric, unit="degF", value=212)
        assert isinstance(result, ValidReading)
        assert (result.metric.name, result.value) == ("body_temp", 100.0)


def test_body_error_message_is_its_detail() -> None:
    with pytest.raises(BodyError) as caught:
        parse_body(b"[]")
    assert str(caught.value) == caught.value.detail
    assert caught.value.status == 400


def test_foreign_device_message() -> None:
    with pytest.raises(ForeignDevice, match=r"^a reading names a device the token does not cover$"):
        validate_readings([{**GOOD, "device_id": "dev-2"}], DEVICE, NOW_US)
