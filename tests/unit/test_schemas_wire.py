"""Wire models of the HTTP API: strictness, reject codes, derived message ids, OpenAPI metadata."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.wire import (
    DEVICE_ID_PATTERN,
    FUTURE_TOLERANCE,
    MAX_BODY_BYTES,
    MAX_READINGS,
    MESSAGE_ID_NAMESPACE,
    IngestResponse,
    Reading,
    ReadingBatch,
    RejectedReading,
    derive_message_id,
    reject_code,
)

BASE: dict[str, Any] = {
    "device_id": "dev-01",
    "metric": "heart_rate",
    "value": 72.5,
    "measured_at": "2024-05-01T12:00:00Z",
}


def _json(**changes: Any) -> bytes:
    body = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in body.items() if v is not _DROP})


_DROP = object()


def _codes(data: bytes) -> list[str]:
    with pytest.raises(ValidationError) as info:
        Reading.model_validate_json(data)
    return [reject_code(e["type"], tuple(e["loc"])) for e in info.value.errors()]


def test_constants() -> None:
    assert DEVICE_ID_PATTERN == r"^[A-Za-z0-9._:-]{1,64}$"
    assert MAX_READINGS == 1000
    assert MAX_BODY_BYTES == 1_048_576
    assert FUTURE_TOLERANCE.total_seconds() == 300


def test_minimal_reading() -> None:
    reading = Reading.model_validate_json(_json())
    assert reading.device_id == "dev-01"
    assert reading.patient_id is None
    assert reading.message_id is None
    assert reading.unit is None
    assert reading.value == 72.5
    assert reading.measured_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_full_reading_with_offset_and_integer_value() -> None:
    reading = Reading.model_validate_json(
        _json(
            patient_id="pat:7f.3_a-",
            message_id="m" * 128,
            value=72,
            unit="bpm",
            measured_at="2024-05-01T14:00:00.123456+02:00",
        )
    )
    assert isinstance(reading.value, float)
    assert reading.value == 72.0
    assert reading.measured_at == datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert reading.measured_at.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    "stamp", ["2024-05-01T12:00:00z", "2024-05-01t12:00:00Z", "2024-05-01 12:00:00Z", "2024-05-01T12:00:00-05:30"]
)
def test_rfc3339_variants_accepted(stamp: str) -> None:
    assert Reading.model_validate_json(_json(measured_at=stamp)).measured_at.tzinfo is not None


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-05-01T12:00:00",
        "2024-05-01",
        "2024-05-01T12:00:00+0200",
        "2024-05-01T12:00Z",
        "yesterday",
        "2024-13-01T12:00:00Z",
        "2024-05-01T12:00:00Z\n",
        "",
    ],
)
def test_bad_timestamps_are_invalid_timestamp(stamp: str) -> None:
    assert _codes(_json(measured_at=stamp)) == ["invalid_timestamp"]


@pytest.mark.parametrize("value", [True, False, "72", None, [72], {"v": 72}])
def test_value_must_be_a_number(value: Any) -> None:
    assert _codes(_json(value=value)) == ["invalid_type"]


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_value_must_be_finite(raw: bytes) -> None:
    data = _json(value=123456789).replace(b"123456789", raw)
    assert _codes(data) == ["invalid_value"]


def test_timestamp_as_number_is_invalid_type() -> None:
    assert _codes(_json(measured_at=1714564800)) == ["invalid_type"]


@pytest.mark.parametrize("field", ["device_id", "metric", "value", "measured_at"])
def test_required_fields(field: str) -> None:
    assert _codes(_json(**{field: _DROP})) == ["missing_field"]


def test_extra_field_rejected() -> None:
    assert _codes(_json(temperature=1)) == ["extra_field"]


@pytest.mark.parametrize("device_id", ["", "a b", "dev/1", "x" * 65, "dév", "dev\n"])
def test_device_id_pattern(device_id: str) -> None:
    assert _codes(_json(device_id=device_id)) == ["invalid_value"]


def test_device_id_max_length_accepted() -> None:
    assert Reading.model_validate_json(_json(device_id="A" * 64)).device_id == "A" * 64


@pytest.mark.parametrize(("field", "value"), [("patient_id", "p q"), ("message_id", ""), ("message_id", "m" * 129)])
def test_optional_field_constraints(field: str, value: str) -> None:
    assert _codes(_json(**{field: value})) == ["invalid_value"]


@pytest.mark.parametrize("field", ["device_id", "metric", "unit", "patient_id"])
def test_strings_must_be_strings(field: str) -> None:
    assert _codes(_json(**{field: 7})) == ["invalid_type"]


def test_several_errors_reported_per_field() -> None:
    codes = _codes(orjson.dumps({"device_id": "d", "value": "1", "measured_at": "x", "zzz": 1}))
    assert sorted(codes) == ["extra_field", "invalid_timestamp", "invalid_type", "missing_field"]


def test_batch_bounds() -> None:
    one = ReadingBatch.model_validate_json(orjson.dumps({"readings": [BASE]}))
    assert len(one.readings) == 1
    full = ReadingBatch.model_validate_json(orjson.dumps({"readings": [BASE] * MAX_READINGS}))
    assert len(full.readings) == MAX_READINGS
    bad: list[dict[str, Any]] = [
        {"readings": []},
        {"readings": [BASE] * (MAX_READINGS + 1)},
        {"readings": [BASE], "x": 1},
        {},
    ]
    for body in bad:
        with pytest.raises(ValidationError):
            ReadingBatch.model_validate_json(orjson.dumps(body))


def test_type_adapter_strict_json_path() -> None:
    adapter = TypeAdapter(Reading | ReadingBatch)
    assert isinstance(adapter.validate_json(_json(), strict=True), Reading)
    assert isinstance(adapter.validate_json(orjson.dumps({"readings": [BASE]}), strict=True), ReadingBatch)


def test_response_models_serialise() -> None:
    response = IngestResponse(
        request_id="r1",
        accepted=1,
        rejected=[RejectedReading(index=1, code="unknown_metric", message="unknown metric 'pulse'")],
    )
    assert orjson.loads(response.model_dump_json()) == {
        "request_id": "r1",
        "accepted": 1,
        "rejected": [{"index": 1, "code": "unknown_metric", "message": "unknown metric 'pulse'"}],
    }
    with pytest.raises(ValidationError):
        RejectedReading.model_validate({"index": 0, "code": "nope", "message": "x"})
    with pytest.raises(ValidationError):
        RejectedReading.model_validate({"index": -1, "code": "invalid_type", "message": "x"})


def test_openapi_schema_has_descriptions_and_examples() -> None:
    schema = Reading.model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"device_id", "metric", "value", "measured_at"}
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
    assert schema["examples"][0]["metric"] == "heart_rate"
    Reading.model_validate_json(orjson.dumps(schema["examples"][0]))


def test_derive_message_id_is_a_stable_uuid5() -> None:
    mid = derive_message_id("dev-01", "heart_rate", 1_714_564_800_000_000, 72.0)
    parsed = uuid.UUID(mid)
    assert parsed.version == 5
    assert mid == str(uuid.uuid5(MESSAGE_ID_NAMESPACE, "dev-01|heart_rate|1714564800000000|72.0"))
    # Frozen forever: client retries that rely on derived ids dedupe across releases.
    assert str(MESSAGE_ID_NAMESPACE) == "6f1c9a4e-2d7b-5e83-9a0c-4b1d7e2f5a36"
    assert mid == derive_message_id("dev-01", "heart_rate", 1_714_564_800_000_000, 72)


def test_derive_message_id_depends_on_every_input() -> None:
    base = ("dev-01", "heart_rate", 1_714_564_800_000_000, 72.0)
    ids = {
        derive_message_id(*base),
        derive_message_id("dev-02", *base[1:]),
        derive_message_id(base[0], "spo2", *base[2:]),
        derive_message_id(*base[:2], base[2] + 1, base[3]),
        derive_message_id(*base[:3], 72.00000000000001),
    }
    assert len(ids) == 5


def test_derive_message_id_negative_zero() -> None:
    assert derive_message_id("d", "m", 0, -0.0) == derive_message_id("d", "m", 0, 0.0)


def test_a_measured_at_value_error_below_the_field_is_a_timestamp_error() -> None:
    assert reject_code("value_error", ("measured_at", "function-after[check(), str]")) == "invalid_timestamp"
    assert reject_code("value_error", ("value",)) != "invalid_timestamp"
