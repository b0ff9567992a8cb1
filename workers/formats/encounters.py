"""Stage: parse an EHR encounters CSV (CONTRACT §8) into ``schemas.arrow.ENCOUNTERS`` rows.

Input header: ``encounter_id,patient_id,provider_id,encounter_type,admit_at,discharge_at,primary_dx``.
Rules: ``encounter_id`` and ``patient_id`` required, <= 64 bytes; ``provider_id``, ``encounter_type``
optional, <= 64 bytes; ``admit_at`` required and ``discharge_at`` optional RFC 3339 timestamps with offset,
``discharge_at >= admit_at``; ``primary_dx`` optional, <= 16 bytes. ``length_of_stay_hours`` is
``(discharge_at - admit_at)`` in hours, null while not discharged. The last row of an ``encounter_id`` wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import ENCOUNTERS
from workers.formats.common import (
    DEFAULT_BLOCK_BYTES,
    DISCHARGE_BEFORE_ADMIT,
    CsvRead,
    ParseResult,
    RowChecks,
    assemble,
    parse_csv_stream,
    read_csv_strings,
)
from workers.formats.values import max_bytes, required, rfc3339

__all__ = ["HEADER", "parse_encounters", "parse_encounters_stream", "validate_encounters"]

HEADER = ("encounter_id", "patient_id", "provider_id", "encounter_type", "admit_at", "discharge_at", "primary_dx")
_US_PER_HOUR = 3_600_000_000


def parse_encounters(data: bytes) -> ParseResult:
    """Good rows (``ENCOUNTERS`` + ``source_line``), rejected rows with reasons, in-file duplicates."""
    read = read_csv_strings(data, HEADER, HEADER, ENCOUNTERS)
    if isinstance(read, ParseResult):
        return read
    result = validate_encounters(read.columns, read.lines)
    rejected = pa.concat_tables([read.malformed, result.rejected]).sort_by("line_number")
    return ParseResult(result.good, rejected, result.duplicates)


def parse_encounters_stream(chunks: Iterable[bytes], *, block_size: int = DEFAULT_BLOCK_BYTES) -> Iterator[ParseResult]:
    """:func:`parse_encounters` block by block (bounded memory); duplicates resolved within a block."""

    def validate(read: CsvRead) -> ParseResult:
        result = validate_encounters(read.columns, read.lines)
        rejected = pa.concat_tables([read.malformed, result.rejected]).sort_by("line_number")
        return ParseResult(result.good, rejected, result.duplicates)

    return parse_csv_stream(chunks, HEADER, HEADER, ENCOUNTERS, validate, block_size=block_size)


def validate_encounters(
    columns: Mapping[str, pa.Array],
    lines: pa.Array,
    checks: RowChecks | None = None,
    labels: Mapping[str, str] | None = None,
) -> ParseResult:
    """Validate string columns ``HEADER`` (trimmed, blank = null) of rows starting at ``lines``.

    ``checks`` may carry failures found earlier; ``labels`` renames columns in ``detail``.
    """
    name = dict(zip(HEADER, HEADER, strict=True)) | dict(labels or {})  # pragma: no mutate (equal lengths)
    checks = checks or RowChecks(len(lines))
    for column in ("encounter_id", "patient_id", "admit_at"):
        required(checks, columns[column], name[column])
    typed: dict[str, pa.Array] = {
        "encounter_id": max_bytes(checks, columns["encounter_id"], name["encounter_id"], 64),
        "patient_id": max_bytes(checks, columns["patient_id"], name["patient_id"], 64),
        "provider_id": max_bytes(checks, columns["provider_id"], name["provider_id"], 64),
        "encounter_type": max_bytes(checks, columns["encounter_type"], name["encounter_type"], 64),
        "admit_at": rfc3339(checks, columns["admit_at"], name["admit_at"]),
        "discharge_at": rfc3339(checks, columns["discharge_at"], name["discharge_at"]),
        "primary_dx": max_bytes(checks, columns["primary_dx"], name["primary_dx"], 16),
    }
    admit, discharge = typed["admit_at"], typed["discharge_at"]
    checks.add(
        pc.less(discharge, admit),
        DISCHARGE_BEFORE_ADMIT,
        f"{name['discharge_at']}: earlier than {name['admit_at']}",
    )
    micros = pc.subtract(pc.cast(discharge, pa.int64()), pc.cast(admit, pa.int64()))
    typed["length_of_stay_hours"] = pc.divide(pc.cast(micros, pa.float64()), float(_US_PER_HOUR))
    encounter_id = columns["encounter_id"]
    fits = pc.less_equal(pc.binary_length(encounter_id), 64)
    no_id = pa.scalar(None, pa.string())  # pragma: no mutate (a null of any type gives string)
    record_id = pc.if_else(fits, encounter_id, no_id)  # pragma: no mutate (a null of any type gives string)
    return assemble(typed, lines, checks, ENCOUNTERS, record_id, ("encounter_id",))
