"""Validated readings → Kinesis records: one envelope per (request, device), partition key device_id.

Pure functions. Contract:
- Values and units are canonical, ``metric`` is the catalogue name and ``loinc_code`` its stored code.
- ``patient_id`` defaults to the device's registered patient (``None`` if it has none).
- ``message_id`` defaults to :func:`schemas.wire.derive_message_id` (computed by :func:`message_id`) over
  the canonical reading, so a retry of the same reading (by name or LOINC code, in any accepted unit) gets
  the same id.
- An envelope that would exceed the Kinesis record limit is split into several records of the same
  device (never happens within the 1 MiB body limit, but the producer must never see an oversize record).
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha1

from schemas.envelope import EnvelopeReadings, encode_envelope
from schemas.wire import MESSAGE_ID_NAMESPACE
from service.validate import ValidReading

MAX_RECORD_BYTES = 1024 * 1024 - 256
"""Kinesis limit on data + partition key, with room for the key."""
_NAMESPACE = MESSAGE_ID_NAMESPACE.bytes


def message_id(device_id: str, metric: str, measured_at_us: int, value: float) -> str:
    """:func:`schemas.wire.derive_message_id` without building ``uuid.UUID`` objects (same output, 4x faster)."""
    name = f"{device_id}|{metric}|{measured_at_us}|{value + 0.0!r}"
    digest = bytearray(sha1(_NAMESPACE + name.encode(), usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True, slots=True)
class Record:
    """One Kinesis record to put."""

    partition_key: str
    data: bytes
    readings: int


def to_columns(readings: list[ValidReading], default_patient_id: str | None) -> EnvelopeReadings:
    """The envelope columns of ``readings`` (all of one device), in request order."""
    columns: EnvelopeReadings = {
        "message_id": [],
        "patient_id": [],
        "metric": [],
        "loinc_code": [],
        "value": [],
        "unit": [],
        "measured_at_us": [],
    }
    message_ids = columns["message_id"]
    patient_ids = columns["patient_id"]
    metrics = columns["metric"]
    loinc_codes = columns["loinc_code"]
    values = columns["value"]
    units = columns["unit"]
    times = columns["measured_at_us"]
    for reading in readings:
        metric = reading.metric
        message_ids.append(
            reading.message_id or message_id(reading.device_id, metric.name, reading.measured_at_us, reading.value)
        )
        patient_ids.append(reading.patient_id if reading.patient_id is not None else default_patient_id)
        metrics.append(metric.name)
        loinc_codes.append(metric.loinc_code)
        values.append(reading.value)
        units.append(metric.canonical_unit)
        times.append(reading.measured_at_us)
    return columns


def build_records(
    request_id: str, received_at_us: int, readings: list[ValidReading], default_patient_id: str | None
) -> list[Record]:
    """The records of one request: an envelope per device (split only if over the record limit)."""
    by_device: dict[str, list[ValidReading]] = {}
    for reading in readings:
        by_device.setdefault(reading.device_id, []).append(reading)
    records: list[Record] = []
    for device_id, group in by_device.items():
        records.extend(_encode(request_id, device_id, received_at_us, group, default_patient_id))
    return records


def _encode(
    request_id: str, device_id: str, received_at_us: int, group: list[ValidReading], default_patient_id: str | None
) -> list[Record]:
    data = encode_envelope(request_id, device_id, received_at_us, to_columns(group, default_patient_id))
    if len(data) <= MAX_RECORD_BYTES or len(group) == 1:
        return [Record(device_id, data, len(group))]
    half = len(group) // 2
    return [
        *_encode(request_id, device_id, received_at_us, group[:half], default_patient_id),
        *_encode(request_id, device_id, received_at_us, group[half:], default_patient_id),
    ]
