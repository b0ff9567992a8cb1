"""Kinesis envelope: round trip and every EnvelopeError case."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.envelope import (
    ENVELOPE_VERSION,
    READING_COLUMNS,
    EnvelopeError,
    EnvelopeReadings,
    decode_envelope,
    encode_envelope,
    envelope_length,
)


def _readings(n: int = 2) -> EnvelopeReadings:
    return {
        "message_id": [f"m{i}" for i in range(n)],
        "patient_id": ["p1" if i % 2 == 0 else None for i in range(n)],
        "metric": ["heart_rate"] * n,
        "loinc_code": ["8867-4"] * n,
        "value": [72.0 + i / 3 for i in range(n)],
        "unit": ["/min"] * n,
        "measured_at_us": [1_714_564_800_000_000 + i for i in range(n)],
    }


def _valid() -> dict[str, Any]:
    return {
        "v": 1,
        "request_id": "req-1",
        "device_id": "dev-1",
        "received_at_us": 1_714_564_801_000_000,
        "readings": dict(_readings()),
    }


def test_columns_are_the_contract_order() -> None:
    assert ENVELOPE_VERSION == 1
    assert READING_COLUMNS == (
        "message_id",
        "patient_id",
        "metric",
        "loinc_code",
        "value",
        "unit",
        "measured_at_us",
    )
    assert tuple(EnvelopeReadings.__annotations__) == READING_COLUMNS


def test_round_trip_is_exact() -> None:
    readings = _readings(5)
    data = encode_envelope("req-1", "dev-1", 1_714_564_801_000_000, readings)
    envelope = decode_envelope(data)
    assert envelope == {
        "v": 1,
        "request_id": "req-1",
        "device_id": "dev-1",
        "received_at_us": 1_714_564_801_000_000,
        "readings": readings,
    }
    # Floats survive bit for bit; microsecond timestamps stay integers.
    assert envelope["readings"]["value"] == readings["value"]
    assert all(type(t) is int for t in envelope["readings"]["measured_at_us"])


def test_wire_layout() -> None:
    data = encode_envelope("r", "d", 7, _readings(1))
    assert data.startswith(b'{"v":1,"request_id":"r","device_id":"d","received_at_us":7,"readings":{')
    assert list(orjson.loads(data)["readings"]) == list(READING_COLUMNS)


def test_encode_writes_only_reading_columns() -> None:
    readings: dict[str, Any] = dict(_readings(1))
    readings["extra"] = [1]
    data = encode_envelope("r", "d", 7, readings)  # type: ignore[arg-type]
    assert "extra" not in orjson.loads(data)["readings"]


def test_encode_rejects_unequal_columns() -> None:
    readings = _readings(2)
    readings["value"].append(1.0)
    with pytest.raises(EnvelopeError, match="unequal"):
        encode_envelope("r", "d", 7, readings)


def test_encode_rejects_missing_column() -> None:
    readings: dict[str, Any] = dict(_readings(2))
    del readings["unit"]
    with pytest.raises(EnvelopeError, match=r"readings\.unit"):
        encode_envelope("r", "d", 7, readings)  # type: ignore[arg-type]


def test_encode_rejects_unserialisable() -> None:
    readings = _readings(1)
    readings["value"] = [object()]  # type: ignore[list-item]
    with pytest.raises(EnvelopeError, match="serialisable"):
        encode_envelope("r", "d", 7, readings)


def test_empty_envelope_round_trips() -> None:
    readings = _readings(0)
    assert envelope_length(readings) == 0
    assert decode_envelope(encode_envelope("r", "d", 7, readings))["readings"] == readings


def test_unknown_keys_are_ignored() -> None:
    obj = _valid()
    obj["future"] = True
    obj["readings"]["future_column"] = [1, 2]
    assert decode_envelope(orjson.dumps(obj))["request_id"] == "req-1"


def _mutated(path: tuple[str, ...], value: Any) -> bytes:
    obj = _valid()
    target = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return orjson.dumps(obj)


_DELETE = object()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(b"", "not JSON", id="empty"),
        pytest.param(b"{not json", "not JSON", id="garbage"),
        pytest.param(b"\xff\xfe", "not JSON", id="not-utf8"),
        pytest.param(b"[1, 2]", "JSON object", id="array"),
        pytest.param(b'"text"', "JSON object", id="string"),
        pytest.param(_mutated(("v",), _DELETE), "version", id="no-version"),
        pytest.param(_mutated(("v",), "1"), "version", id="string-version"),
        pytest.param(_mutated(("v",), True), "version", id="bool-version"),
        pytest.param(_mutated(("v",), 2), "unsupported envelope version 2", id="future-version"),
        pytest.param(_mutated(("v",), 0), "unsupported envelope version 0", id="old-version"),
        pytest.param(_mutated(("request_id",), _DELETE), "request_id", id="no-request-id"),
        pytest.param(_mutated(("request_id",), 5), "request_id", id="int-request-id"),
        pytest.param(_mutated(("device_id",), None), "device_id", id="null-device-id"),
        pytest.param(_mutated(("received_at_us",), 1.5), "received_at_us", id="float-received-at"),
        pytest.param(_mutated(("received_at_us",), False), "received_at_us", id="bool-received-at"),
        pytest.param(_mutated(("received_at_us",), _DELETE), "received_at_us", id="no-received-at"),
        pytest.param(_mutated(("readings",), _DELETE), "readings must be an object", id="no-readings"),
        pytest.param(_mutated(("readings",), [[1]]), "readings must be an object", id="row-readings"),
        pytest.param(_mutated(("readings", "metric"), _DELETE), r"readings\.metric", id="missing-column"),
        pytest.param(_mutated(("readings", "value"), 72.0), r"readings\.value", id="scalar-column"),
        pytest.param(_mutated(("readings", "measured_at_us"), [1]), "unequal", id="short-column"),
    ],
)
def test_decode_rejects(data: bytes, match: str) -> None:
    with pytest.raises(EnvelopeError, match=match) as info:
        decode_envelope(data)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"readings": [1, 2]}, "readings must be an object of columns"),
        ({"v": "1"}, "envelope has no integer version 'v'"),
        ({"received_at_us": 1.5}, "received_at_us must be an integer"),
    ],
)
def test_defects_are_named_exactly(change: dict[str, Any], message: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_envelope(orjson.dumps({**_valid(), **change}))
    assert str(info.value) == message
    with pytest.raises(EnvelopeError) as info:
        decode_envelope(b"[1]")
    assert str(info.value) == "envelope must be a JSON object"
