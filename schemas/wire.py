"""Pydantic v2 models of the gateway HTTP API (CONTRACT §2), for validation and the OpenAPI document.

Contract:
- ``Reading`` is strict and closed: unknown fields, strings or booleans as numbers, non-finite numbers and
  timestamps without an offset are rejected. Validate from raw JSON (``model_validate_json`` or a
  ``TypeAdapter(...).validate_json``); ``measured_at`` must be an RFC 3339 string (or, from Python, an aware
  ``datetime``). Metric, unit and future-timestamp checks need the catalogue and a clock and are the gateway's job
  (``FUTURE_TOLERANCE``); ``reject_code`` maps a pydantic error to the per-reading reject code.
- ``derive_message_id`` is stable across processes and releases: changing it breaks client retries' dedupe.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEVICE_ID_PATTERN",
    "FUTURE_TOLERANCE",
    "MAX_BODY_BYTES",
    "MAX_READINGS",
    "MESSAGE_ID_NAMESPACE",
    "RFC3339_PATTERN",
    "ErrorDetail",
    "IngestResponse",
    "Reading",
    "ReadingBatch",
    "RejectCode",
    "RejectedReading",
    "derive_message_id",
    "reject_code",
]

DEVICE_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
"""Pattern of ``device_id`` and ``patient_id``."""
MAX_READINGS = 1000
"""Most readings in one request; more is a 413."""
MAX_BODY_BYTES = 1024 * 1024
"""Largest request body; more is a 413."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far in the future ``measured_at`` may be (relative to the gateway's clock) before ``future_timestamp``."""
RFC3339_PATTERN = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""RFC 3339 ``date-time`` with a mandatory offset (``Z`` or ``±HH:MM``, HH ≤ 23, MM ≤ 59), ASCII digits only
(``[0-9]``: a ``\\d`` would match any Unicode digit); pydantic alone also accepts ``+hhmm`` and bare dates."""
MESSAGE_ID_NAMESPACE = uuid.UUID("6f1c9a4e-2d7b-5e83-9a0c-4b1d7e2f5a36")
"""UUIDv5 namespace of derived message ids. Never change it."""

RejectCode = Literal[
    "missing_field",
    "extra_field",
    "invalid_type",
    "unknown_metric",
    "unknown_unit",
    "invalid_value",
    "invalid_timestamp",
    "future_timestamp",
    "stale_timestamp",
]

_EXAMPLE_READING: dict[str, Any] = {
    "device_id": "dev-0001",
    "patient_id": "pat-7f3a",
    "message_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "metric": "heart_rate",
    "value": 72,
    "unit": "/min",
    "measured_at": "2024-05-01T12:00:00Z",
}

_Identifier = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, min_length=1, max_length=64)]


class Reading(BaseModel):
    """One measurement from one device, as posted."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={"examples": [_EXAMPLE_READING]},
    )

    device_id: _Identifier = Field(
        description="Device identifier; the bearer token must cover it.", examples=["dev-0001"]
    )
    patient_id: _Identifier | None = Field(
        default=None,
        description="Pseudonymous patient id; if absent, the device's registered patient.",
        examples=["pat-7f3a"],
    )
    message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Client id of the reading (UUID recommended); if absent, derived deterministically "
        "from device_id, metric, measured_at and value.",
        examples=["1b4e28ba-2fa1-11d2-883f-0016d3cca427"],
    )
    metric: str = Field(
        min_length=1,
        max_length=64,
        description="Metric name or one of its LOINC codes, e.g. heart_rate or 8867-4.",
        examples=["heart_rate", "8867-4"],
    )
    value: float = Field(
        allow_inf_nan=False,
        description="Finite JSON number (not a string, not a boolean), in `unit`.",
        examples=[72, 36.8],
    )
    unit: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="UCUM unit or a listed alias; if absent, the metric's canonical unit.",
        examples=["/min", "[degF]"],
    )
    measured_at: AwareDatetime = Field(
        description="RFC 3339 timestamp with an offset (`Z` or `±hh:mm`); at most 5 minutes in the future, not older "
        "than `VITALSTREAM_MAX_READING_AGE` (default 30 days).",
        examples=["2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00"],
    )

    @field_validator("measured_at", mode="before")
    @classmethod
    def _rfc3339(cls, raw: object) -> object:
        """Parse an RFC 3339 string here (strict mode would refuse a str once it left the JSON parser)."""
        if not isinstance(raw, str):
            return raw
        if RFC3339_PATTERN.fullmatch(raw):
            try:
                return datetime.fromisoformat(raw.upper())
            except ValueError:
                pass
        raise ValueError("measured_at must be RFC 3339 with an offset, e.g. 2024-05-01T12:00:00Z")


class ReadingBatch(BaseModel):
    """Several readings in one request (1 to ``MAX_READINGS``)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"readings": [_EXAMPLE_READING]}]},
    )

    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS, description="1 to 1000 readings.")


class RejectedReading(BaseModel):
    """Why one reading of a request was not accepted; ``index`` is its position in the request (0-based)."""

    index: int = Field(ge=0, description="Position of the reading in the request, from 0.")
    code: RejectCode
    message: str


class IngestResponse(BaseModel):
    """Body of 202 (at least one reading accepted) and 422 (none accepted, ``accepted == 0``)."""

    request_id: str = Field(description="Id of this request, also in the raw archive.")
    accepted: int = Field(ge=0, description="Readings durably written to the stream.")
    rejected: list[RejectedReading] = Field(default_factory=list)


class ErrorDetail(BaseModel):
    """Body of every other error response (400, 401, 403, 413, 415, 429, 503)."""

    detail: str


_TIMESTAMP_ERRORS = frozenset(
    {
        "datetime_parsing",
        "datetime_from_date_parsing",
        "datetime_object_invalid",
        "datetime_past",
        "datetime_future",
        "timezone_aware",
        "timezone_naive",
    }
)
_VALUE_ERRORS = frozenset(
    {
        "finite_number",
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
    }
)


def reject_code(error_type: str, loc: tuple[int | str, ...] = ()) -> RejectCode:
    """Map a pydantic error (``ErrorDetails['type']`` and ``['loc']``) of a ``Reading`` to a reject code.

    ``missing`` → ``missing_field``; ``extra_forbidden`` → ``extra_field``; a string ``measured_at`` that is
    unparsable or has no offset → ``invalid_timestamp``; non-finite numbers and pattern/length violations →
    ``invalid_value``; everything else (wrong JSON type, bool as number, string as number, number as
    timestamp) → ``invalid_type``.
    """
    if error_type == "missing":
        return "missing_field"
    if error_type == "extra_forbidden":
        return "extra_field"
    if error_type in _TIMESTAMP_ERRORS or (loc[:1] == ("measured_at",) and error_type == "value_error"):
        return "invalid_timestamp"
    if error_type in _VALUE_ERRORS:
        return "invalid_value"
    return "invalid_type"


def derive_message_id(device_id: str, metric: str, measured_at_us: int, value: float) -> str:
    """Return the deterministic message id of a reading that came without one.

    UUIDv5 in ``MESSAGE_ID_NAMESPACE`` over ``"{device_id}|{metric}|{measured_at_us}|{repr(float(value))}"``,
    where ``metric`` is the catalogue name, ``measured_at_us`` UTC epoch microseconds and ``value`` the
    canonical value (``-0.0`` is taken as ``0.0``). Callers must pass canonical inputs, so that the same
    reading posted by name or LOINC code, in any accepted unit, gets the same id.
    """
    canonical = f"{device_id}|{metric}|{int(measured_at_us)}|{float(value) + 0.0!r}"
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, canonical))
