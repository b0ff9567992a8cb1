"""The Kinesis record format shared by the gateway (writer) and the workers (reader).

One record per (request, device), readings stored column-wise, serialised with orjson::

    {"v": 1, "request_id": str, "device_id": str, "received_at_us": int,
     "readings": {"message_id": [str], "patient_id": [str | None], "metric": [str], "loinc_code": [str],
                  "value": [float], "unit": [str], "measured_at_us": [int]}}

``metric`` is the catalogue name, ``value`` and ``unit`` are canonical, timestamps are UTC epoch
microseconds. ``decode_envelope`` checks the shape (version, field types, all seven columns present as lists
of equal length) but not the type of each element: building Arrow arrays with ``schemas.arrow.READINGS``
types does that column-wise. Unknown keys are ignored (readers tolerate additions within a version).
"""

from __future__ import annotations

from typing import Any, TypedDict

import orjson

__all__ = [
    "ENVELOPE_VERSION",
    "READING_COLUMNS",
    "Envelope",
    "EnvelopeError",
    "EnvelopeReadings",
    "decode_envelope",
    "encode_envelope",
    "envelope_length",
]

ENVELOPE_VERSION = 1
READING_COLUMNS: tuple[str, ...] = (
    "message_id",
    "patient_id",
    "metric",
    "loinc_code",
    "value",
    "unit",
    "measured_at_us",
)


class EnvelopeError(ValueError):
    """Bytes that are not a valid envelope of a supported version."""


class EnvelopeReadings(TypedDict):
    """The readings of one envelope, one list per column, all of equal length."""

    message_id: list[str]
    patient_id: list[str | None]
    metric: list[str]
    loinc_code: list[str]
    value: list[float]
    unit: list[str]
    measured_at_us: list[int]


class Envelope(TypedDict):
    """A decoded Kinesis record."""

    v: int
    request_id: str
    device_id: str
    received_at_us: int
    readings: EnvelopeReadings


def _check_readings(readings: Any) -> int:
    """Return the number of readings, or raise ``EnvelopeError`` if the columns are malformed."""
    if not isinstance(readings, dict):
        raise EnvelopeError("readings must be an object of columns")
    lengths: set[int] = set()
    for column in READING_COLUMNS:
        values = readings.get(column)
        if not isinstance(values, list):
            raise EnvelopeError(f"readings.{column} must be a list")
        lengths.add(len(values))
    if len(lengths) != 1:
        raise EnvelopeError(f"reading columns have unequal lengths {sorted(lengths)}")
    return lengths.pop()


def envelope_length(readings: EnvelopeReadings) -> int:
    """Number of readings in ``readings``; raises ``EnvelopeError`` if the columns are malformed."""
    return _check_readings(readings)


def encode_envelope(request_id: str, device_id: str, received_at_us: int, readings: EnvelopeReadings) -> bytes:
    """Serialise one envelope; raises ``EnvelopeError`` if ``readings`` is malformed.

    Only the seven ``READING_COLUMNS`` are written, in that order.
    """
    _check_readings(readings)
    envelope = {
        "v": ENVELOPE_VERSION,
        "request_id": request_id,
        "device_id": device_id,
        "received_at_us": received_at_us,
        "readings": {column: readings[column] for column in READING_COLUMNS},  # type: ignore[literal-required]
    }
    try:
        return orjson.dumps(envelope)
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise EnvelopeError(f"envelope is not serialisable: {exc}") from exc


def decode_envelope(data: bytes) -> Envelope:
    """Parse and shape-check one envelope; raises ``EnvelopeError`` on any defect."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"envelope is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise EnvelopeError("envelope must be a JSON object")
    version = obj.get("v")
    if type(version) is not int:
        raise EnvelopeError("envelope has no integer version 'v'")
    if version != ENVELOPE_VERSION:
        raise EnvelopeError(f"unsupported envelope version {version} (supported: {ENVELOPE_VERSION})")
    for key in ("request_id", "device_id"):
        if not isinstance(obj.get(key), str):
            raise EnvelopeError(f"{key} must be a string")
    if type(obj.get("received_at_us")) is not int:
        raise EnvelopeError("received_at_us must be an integer")
    _check_readings(obj.get("readings"))
    envelope: Envelope = obj  # type: ignore[assignment]
    return envelope
