"""Strict validation of ``POST /v1/vitals`` bodies from raw bytes (CONTRACT §2, §3).

Contract:
- :func:`parse_body` turns the body into the list of raw readings, or raises :class:`BodyError`
  (400: not JSON, not an object, malformed batch; 413: more than ``MAX_READINGS`` readings).
- :func:`validate_readings` checks each reading on its own and returns the valid ones (metric
  resolved, value converted to the canonical unit, ``measured_at`` as UTC epoch microseconds) and one
  :class:`Rejection` per invalid reading with exactly one reject code of §2. It agrees with the strict
  pydantic model ``schemas.wire.Reading`` on what is well-formed; the catalogue and the clock add
  ``unknown_metric``, ``unknown_unit``, ``future_timestamp`` and ``stale_timestamp`` (older than the maximum
  reading age, ``VITALSTREAM_MAX_READING_AGE``, default 30 days).
- Timestamps are RFC 3339 exactly (``schemas.wire.RFC3339_PATTERN``): offsets ``Z`` or ``±HH:MM`` with
  HH ≤ 23 and MM ≤ 59, ASCII digits only (fraction included).
- A reading whose ``device_id`` is well-formed but not the authenticated device raises
  :class:`ForeignDevice` (403, nothing accepted), whatever else is wrong with the request.
- Messages name fields, never echo values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.catalogue import METRICS, Metric, UnitConversion, resolve_metric
from schemas.wire import DEVICE_ID_PATTERN, FUTURE_TOLERANCE, MAX_READINGS, RFC3339_PATTERN, RejectCode

_IDENTIFIER = re.compile(DEVICE_ID_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
FUTURE_TOLERANCE_US = FUTURE_TOLERANCE // _MICROSECOND
REQUIRED = ("device_id", "metric", "value", "measured_at")
ALLOWED = frozenset({*REQUIRED, "patient_id", "message_id", "unit"})
MESSAGE_ID_MAX = 128
DEFAULT_MAX_READING_AGE_US = 30 * 86_400 * 1_000_000
"""Default maximum age of ``measured_at`` (CONTRACT §5 ``VITALSTREAM_MAX_READING_AGE``): 30 days."""
_UNIT_TYPES = (str, type(None))
_IDENTITY = UnitConversion()
_BY_METRIC_UNIT: dict[tuple[str, str | None], tuple[Metric, UnitConversion]] = {
    (key, unit): (metric, conversion)
    for metric in METRICS.values()
    for key in (metric.name, *metric.loinc_codes)
    for unit, conversion in ((None, _IDENTITY), *metric.units.items())
}
"""(metric name or LOINC code, unit or None) → (metric, conversion to the canonical unit)."""


class BodyError(Exception):
    """The body as a whole is unusable; ``status`` is 400 or 413."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ForeignDevice(Exception):
    """A reading names a device the token does not cover (403)."""


@dataclass(slots=True)
class ValidReading:
    """A reading that passed validation, already in canonical form."""

    index: int
    device_id: str
    patient_id: str | None
    message_id: str | None
    metric: Metric
    value: float
    measured_at_us: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the reading at ``index`` was not accepted."""

    index: int
    code: RejectCode
    message: str


def parse_body(body: bytes) -> list[Any]:
    """The raw readings of a body: one reading object, or ``{"readings": [...]}`` with 1..1000 items."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BodyError(400, "body is not valid JSON") from None
    if type(document) is not dict:
        raise BodyError(400, 'body must be a JSON object: one reading or {"readings": [...]}')
    if "readings" not in document:
        return [document]
    items = document["readings"]
    if len(document) != 1:
        raise BodyError(400, 'a batch object has the single key "readings"')
    if type(items) is not list or not items:
        raise BodyError(400, f'"readings" must be a list of 1 to {MAX_READINGS} readings')
    if len(items) > MAX_READINGS:
        raise BodyError(413, f"more than {MAX_READINGS} readings in one request")
    return items


def validate_readings(
    items: list[Any], device_id: str, now_us: int, *, max_age_us: int = DEFAULT_MAX_READING_AGE_US
) -> tuple[list[ValidReading], list[Rejection]]:
    """Validate every reading of a request sent with a token for ``device_id`` at ``now_us``."""
    for raw in items:
        if type(raw) is dict:
            named = raw.get("device_id")
            if type(named) is str and named != device_id and _IDENTIFIER.fullmatch(named):
                raise ForeignDevice("a reading names a device the token does not cover")
    valid: list[ValidReading] = []
    rejected: list[Rejection] = []
    latest_us = now_us + FUTURE_TOLERANCE_US
    earliest_us = now_us - max_age_us
    for index, raw in enumerate(items):
        result = validate_reading(index, raw, latest_us, earliest_us)
        if type(result) is ValidReading:
            valid.append(result)
        else:
            rejected.append(result)  # type: ignore[arg-type]
    return valid, rejected


def validate_reading(index: int, raw: Any, latest_us: int, earliest_us: int) -> ValidReading | Rejection:
    """Check one raw reading; ``latest_us``/``earliest_us``: the latest/oldest acceptable ``measured_at`` (epoch µs)."""
    if type(raw) is not dict:
        return Rejection(index, "invalid_type", "a reading must be a JSON object")
    if not raw.keys() <= ALLOWED:
        extra = sorted(str(key) for key in raw.keys() - ALLOWED)
        return Rejection(index, "extra_field", f"unknown field(s): {', '.join(k[:64] for k in extra[:5])}")
    for field in REQUIRED:
        if field not in raw:
            return Rejection(index, "missing_field", f"{field} is required")

    device_id = raw["device_id"]
    if type(device_id) is not str:
        return Rejection(index, "invalid_type", "device_id must be a string")
    if not _IDENTIFIER.fullmatch(device_id):
        return Rejection(index, "invalid_value", f"device_id must match {DEVICE_ID_PATTERN}")
    patient_id = raw.get("patient_id")
    if patient_id is not None:
        if type(patient_id) is not str:
            return Rejection(index, "invalid_type", "patient_id must be a string")
        if not _IDENTIFIER.fullmatch(patient_id):
            return Rejection(index, "invalid_value", f"patient_id must match {DEVICE_ID_PATTERN}")
    message_id = raw.get("message_id")
    if message_id is not None:
        if type(message_id) is not str:
            return Rejection(index, "invalid_type", "message_id must be a string")
        if not 0 < len(message_id) <= MESSAGE_ID_MAX:
            return Rejection(index, "invalid_value", f"message_id must have 1 to {MESSAGE_ID_MAX} characters")

    name = raw["metric"]
    unit = raw.get("unit")
    known = _BY_METRIC_UNIT.get((name, unit)) if type(name) is str and type(unit) in _UNIT_TYPES else None
    if known is None:  # every known (metric, unit or None) is in _BY_METRIC_UNIT: only the reason is left to find
        if type(name) is not str:
            return Rejection(index, "invalid_type", "metric must be a string")
        resolved = resolve_metric(name)
        if resolved is None:
            return Rejection(index, "unknown_metric", "metric is not a catalogue metric name or LOINC code")
        if type(unit) is not str:
            return Rejection(index, "invalid_type", "unit must be a string")
        accepted = ", ".join(resolved.units)
        return Rejection(index, "unknown_unit", f"unit not accepted for {resolved.name} (accepted: {accepted})")
    metric, conversion = known

    value = raw["value"]
    value_type = type(value)
    if value_type is not float and value_type is not int:
        return Rejection(index, "invalid_type", "value must be a JSON number")

    measured_at = raw["measured_at"]
    if type(measured_at) is not str:
        return Rejection(index, "invalid_type", "measured_at must be an RFC 3339 string")
    measured_at_us = parse_timestamp_us(measured_at)
    if measured_at_us is None:
        return Rejection(index, "invalid_timestamp", "measured_at must be RFC 3339 with an offset (Z or ±hh:mm)")
    if measured_at_us > latest_us:
        return Rejection(index, "future_timestamp", "measured_at is more than 5 minutes in the future")
    if measured_at_us < earliest_us:
        return Rejection(index, "stale_timestamp", "measured_at is older than the maximum reading age")

    try:
        canonical = conversion.apply(value)
    except OverflowError:
        canonical = math.inf
    if not math.isfinite(canonical):
        return Rejection(index, "invalid_value", "value must be a finite number in the canonical unit")
    return ValidReading(index, device_id, patient_id, message_id, metric, canonical, measured_at_us)


def parse_timestamp_us(text: str) -> int | None:
    """UTC epoch microseconds of an RFC 3339 timestamp with an offset, else None."""
    if not RFC3339_PATTERN.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text.upper())
        return (moment - _EPOCH) // _MICROSECOND
    except (ValueError, OverflowError):
        return None
