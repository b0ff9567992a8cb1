"""The fast path of ``POST /v1/vitals``: a request whose readings are all valid, straight to one envelope.

Contract:
- :func:`fast_envelope` takes the raw readings of a request (from :func:`service.validate.parse_body`)
  sent with a token for ``device_id``, and returns the bytes of its single Kinesis record: exactly the
  envelope that :func:`service.validate.validate_readings` followed by :func:`service.normalise.build_records`
  produce for that request. It returns ``None`` as soon as anything differs from the common case: a
  reading that would be rejected, a reading of another device (403), a record over the size limit, a
  device id that is not well-formed. The caller then takes the per-reading path, which decides the status
  and the reject codes; this function never decides one.
- Work is columnar: every check and conversion runs as one C-level pass (``map``, ``zip``, ``str.translate``,
  set operations) over the request instead of a Python loop per reading.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from hashlib import sha1
from itertools import repeat
from math import isfinite
from operator import add, floordiv, itemgetter, mul, sub
from typing import Any

import orjson

from schemas.catalogue import METRICS
from schemas.envelope import ENVELOPE_VERSION
from schemas.wire import DEVICE_ID_PATTERN, MESSAGE_ID_NAMESPACE
from service.normalise import MAX_RECORD_BYTES
from service.validate import ALLOWED, MESSAGE_ID_MAX

__all__ = ["fast_envelope"]

_IDENTIFIER = re.compile(DEVICE_ID_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NAMESPACE = MESSAGE_ID_NAMESPACE.bytes
_NONE = type(None)
_NUMBERS = frozenset({int, float})
_MESSAGE_ID_TYPES = frozenset({str, _NONE})
_SEPARATOR = "\x00"


def _conversions() -> dict[tuple[str, str | None], tuple[str, str, str, float, float]]:
    """(metric name or LOINC code, unit or None) → (name, stored LOINC code, canonical unit, offset, scale).

    ``canonical = (value + offset) * scale``, the expression of ``UnitConversion.apply``; identity
    conversions get offset ``-0.0`` and scale ``1.0``, which gives exactly ``float(value)`` (``-0.0`` kept).
    """
    table: dict[tuple[str, str | None], tuple[str, str, str, float, float]] = {}
    for metric in METRICS.values():
        for unit, conversion in ((None, None), *metric.units.items()):
            identity = conversion is None or (conversion.scale == 1.0 and conversion.offset == 0.0)
            offset = -0.0 if identity or conversion is None else conversion.offset
            scale = 1.0 if identity or conversion is None else conversion.scale
            for key in (metric.name, *metric.loinc_codes):
                table[key, unit] = (metric.name, metric.loinc_code, metric.canonical_unit, offset, scale)
    return table


def _timestamp_shapes() -> frozenset[str]:
    """Every string ``RFC3339_PATTERN`` accepts, with each ASCII digit written as ``0``."""
    fractions = ["", *("." + "0" * digits for digits in range(1, 10))]
    return frozenset(
        f"0000-00-00{sep}00:00:00{fraction}{offset}"
        for sep in "Tt "
        for fraction in fractions
        for offset in ("Z", "z", "+00:00", "-00:00")
    )


_CONVERSIONS = _conversions()
_SHAPES = _timestamp_shapes()
_DIGITS_TO_ZERO = str.maketrans("0123456789", "0" * 10)
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_DEVICE_ID = itemgetter("device_id")
_METRIC = itemgetter("metric")
_VALUE = itemgetter("value")
_MEASURED_AT = itemgetter("measured_at")
_WELL_FORMED: dict[str, bool] = {}


def _well_formed(identifier: str) -> bool:
    known = _WELL_FORMED.get(identifier)
    if known is None:
        if len(_WELL_FORMED) >= 10_000:
            _WELL_FORMED.clear()
        known = _WELL_FORMED[identifier] = _IDENTIFIER.fullmatch(identifier) is not None
    return known


def _derived_id(prefix: bytes, name: str, measured_at_us: int, value: float) -> str:
    """``schemas.wire.derive_message_id``; ``prefix`` is the namespace bytes + ``device_id`` + ``|``."""
    text = f"{name}|{measured_at_us}|{value + 0.0!r}"  # -0.0 is taken as 0.0
    x = sha1(prefix + text.encode(), usedforsecurity=False).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"  # version 5, RFC 4122 variant


def fast_envelope(
    items: list[Any], device_id: str, patient_id: str | None, request_id: str, received_at_us: int, latest_us: int
) -> bytes | None:
    """The one record of a request whose readings are all valid and of ``device_id``, else ``None``.

    ``patient_id`` is the device's registered patient, ``latest_us`` the latest acceptable ``measured_at``.
    """
    count = len(items)
    if not _well_formed(device_id):
        return None
    try:
        if set(map(type, items)) != {dict} or not all(map(ALLOWED.issuperset, items)):
            return None
        if list(map(_DEVICE_ID, items)).count(device_id) != count:
            return None
        entries = list(
            map(_CONVERSIONS.get, zip(map(_METRIC, items), map(dict.get, items, repeat("unit")), strict=True))
        )
        values = list(map(_VALUE, items))
        stamps = _SEPARATOR.join(map(_MEASURED_AT, items))
    except (KeyError, TypeError):  # a required field missing, a non-string timestamp, an unhashable metric
        return None
    if None in entries or not _NUMBERS.issuperset(map(type, values)):
        return None
    names, loinc_codes, units, offsets, scales = zip(*entries, strict=True)
    try:
        canonical = list(map(mul, map(add, values, offsets), scales))
    except OverflowError:
        return None
    if not isfinite(sum(canonical)):
        return None

    shapes = stamps.translate(_DIGITS_TO_ZERO).split(_SEPARATOR)
    if len(shapes) != count or not _SHAPES.issuperset(shapes):
        return None
    try:
        moments = map(datetime.fromisoformat, stamps.upper().split(_SEPARATOR))
        times = list(map(floordiv, map(sub, moments, repeat(_EPOCH)), repeat(_MICROSECOND)))
    except (ValueError, OverflowError):
        return None
    if max(times) > latest_us:
        return None

    patients = list(map(dict.get, items, repeat("patient_id")))
    try:
        named = set(patients)
    except TypeError:
        return None
    named.discard(None)
    for patient in named:
        if type(patient) is not str or not _IDENTIFIER.fullmatch(patient):
            return None
    if None in patients:
        patients = [patient_id if patient is None else patient for patient in patients]

    message_ids = list(map(dict.get, items, repeat("message_id")))
    if not _MESSAGE_ID_TYPES.issuperset(map(type, message_ids)) or "" in message_ids:
        return None
    if max(map(len, filter(None, message_ids)), default=0) > MESSAGE_ID_MAX:
        return None
    if None in message_ids:
        prefix = _NAMESPACE + device_id.encode() + b"|"
        message_ids = [
            _derived_id(prefix, name, measured_at_us, value) if message_id is None else message_id
            for message_id, name, measured_at_us, value in zip(message_ids, names, times, canonical, strict=True)
        ]

    data = orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "request_id": request_id,
            "device_id": device_id,
            "received_at_us": received_at_us,
            "readings": {
                "message_id": message_ids,
                "patient_id": patients,
                "metric": names,
                "loinc_code": loinc_codes,
                "value": canonical,
                "unit": units,
                "measured_at_us": times,
            },
        }
    )
    return data if len(data) <= MAX_RECORD_BYTES else None
