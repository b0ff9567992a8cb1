"""The fast path of ``POST /v1/vitals``: a request whose readings are all valid, straight to one envelope.

Contract:
- :func:`fast_envelope` takes the raw readings of a request (from :func:`service.validate.parse_body`)
  sent with a token for ``device_id``, and returns the bytes of its single Kinesis record: exactly the
  envelope that :func:`service.validate.validate_readings` followed by :func:`service.normalise.build_records`
  produce for that request. It returns ``None`` as soon as anything differs from the common case: a
  reading that would be rejected, a reading of another device (403), a record over the size limit, a
  device id that is not well-formed, a timestamp form other than the usual ones. The caller then takes the
  per-reading path, which decides the status and the reject codes; this function never decides one.
- :func:`fast_body_envelope` does the same from the request body itself, without building a Python object
  per reading; its record decodes to the same envelope. It also returns ``None`` for a body it does not read
  (escapes, non-ASCII text, repeated keys): the caller then parses the body and tries :func:`fast_envelope`.
- The per-reading work (parsing, field checks, unit conversion, timestamp parsing, derived message ids,
  writing the envelope) runs in the compiled module ``service._fastpath`` (``service/_fastpath.c``, built by
  ``pip install``); this module gives it the catalogue's conversion table (built once, checked for shape and
  frozen by :func:`service._fastpath.conversion_table`: a private read-only copy, so the C side's memo of its
  entries cannot go stale) and the envelope's head.
- Both take ``earliest_us`` (the oldest acceptable ``measured_at``, CONTRACT §2 ``stale_timestamp``; by default
  ``received_at_us`` less :data:`service.validate.DEFAULT_MAX_READING_AGE_US`): an older reading gives ``None``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from schemas.catalogue import METRICS
from schemas.envelope import ENVELOPE_VERSION
from schemas.wire import DEVICE_ID_PATTERN, MAX_READINGS, MESSAGE_ID_NAMESPACE
from service._fastpath import ConversionTable, body_envelope, columns, conversion_table
from service.normalise import MAX_RECORD_BYTES
from service.validate import DEFAULT_MAX_READING_AGE_US, MESSAGE_ID_MAX

__all__ = ["fast_body_envelope", "fast_envelope"]

_IDENTIFIER = re.compile(DEVICE_ID_PATTERN)
_NAMESPACE = MESSAGE_ID_NAMESPACE.bytes

Conversion = tuple[str, str, str, float, float, bytes, bytes, bytes]
Columns = tuple[list[str], list[str | None], list[str], list[str], list[float], list[str], list[int]]


def _conversions() -> dict[str, dict[str | None, Conversion]]:
    """metric name or LOINC code → unit or None → (name, stored LOINC code, canonical unit, offset, scale,
    and the name, code and unit as JSON text).

    ``canonical = (value + offset) * scale``, the expression of ``UnitConversion.apply``; identity
    conversions get offset ``-0.0`` and scale ``1.0``, which gives exactly ``float(value)`` (``-0.0`` kept).
    """
    table: dict[str, dict[str | None, Conversion]] = {}
    for metric in METRICS.values():
        for unit, conversion in ((None, None), *metric.units.items()):
            identity = conversion is None or (conversion.scale == 1.0 and conversion.offset == 0.0)
            offset = -0.0 if identity or conversion is None else float(conversion.offset)
            scale = 1.0 if identity or conversion is None else float(conversion.scale)
            for key in (metric.name, *metric.loinc_codes):
                table.setdefault(key, {})[unit] = (
                    metric.name,
                    metric.loinc_code,
                    metric.canonical_unit,
                    offset,
                    scale,
                    orjson.dumps(metric.name),
                    orjson.dumps(metric.loinc_code),
                    orjson.dumps(metric.canonical_unit),
                )
    return table


_CONVERSIONS: ConversionTable = conversion_table(_conversions())
_WELL_FORMED: dict[str, bytes | None] = {}


def _prefix(device_id: str) -> bytes | None:
    """The derived-id prefix of a well-formed device id (namespace + id + ``|``), else None; cached."""
    if device_id in _WELL_FORMED:
        return _WELL_FORMED[device_id]
    if len(_WELL_FORMED) >= 10_000:
        _WELL_FORMED.clear()
    prefix = _NAMESPACE + device_id.encode() + b"|" if _IDENTIFIER.fullmatch(device_id) else None
    _WELL_FORMED[device_id] = prefix
    return prefix


def fast_body_envelope(
    body: bytes,
    device_id: str,
    patient_id: str | None,
    request_id: str,
    received_at_us: int,
    latest_us: int,
    earliest_us: int | None = None,
) -> tuple[bytes, int] | None:
    """The record of a body whose readings are all valid and of ``device_id`` and its reading count, else ``None``.

    The record decodes to the very envelope :func:`fast_envelope` encodes (floats are written as ``repr``
    writes them, so its bytes may differ).
    """
    prefix = _prefix(device_id)
    if prefix is None:
        return None
    head = b'{"v":%d,"request_id":%s,"device_id":%s,"received_at_us":%d,"readings":{' % (
        ENVELOPE_VERSION,
        orjson.dumps(request_id),
        orjson.dumps(device_id),
        received_at_us,
    )
    if earliest_us is None:
        earliest_us = received_at_us - DEFAULT_MAX_READING_AGE_US
    patient = orjson.dumps(patient_id)
    found = body_envelope(
        body, device_id, patient, earliest_us, latest_us, prefix, _CONVERSIONS, MESSAGE_ID_MAX, MAX_READINGS, head
    )
    if found is None or len(found[0]) > MAX_RECORD_BYTES:
        return None
    return found


def fast_envelope(
    items: list[Any],
    device_id: str,
    patient_id: str | None,
    request_id: str,
    received_at_us: int,
    latest_us: int,
    earliest_us: int | None = None,
) -> bytes | None:
    """The one record of a request whose readings are all valid and of ``device_id``, else ``None``.

    ``patient_id`` is the device's registered patient, ``latest_us`` the latest acceptable ``measured_at``.
    """
    prefix = _prefix(device_id)
    if prefix is None:
        return None
    if earliest_us is None:
        earliest_us = received_at_us - DEFAULT_MAX_READING_AGE_US
    found = columns(items, device_id, patient_id, earliest_us, latest_us, prefix, _CONVERSIONS, MESSAGE_ID_MAX)
    return None if found is None else _encode(found, request_id, device_id, received_at_us)


def _encode(found: Columns, request_id: str, device_id: str, received_at_us: int) -> bytes | None:
    message_ids, patients, names, loinc_codes, values, units, times = found
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
                "value": values,
                "unit": units,
                "measured_at_us": times,
            },
        }
    )
    return data if len(data) <= MAX_RECORD_BYTES else None
