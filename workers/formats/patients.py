"""Stage: parse an EHR patients CSV (CONTRACT §8) into ``schemas.arrow.PATIENTS`` rows.

Input header: ``patient_id,family_name,given_name,birth_date,sex,postal_code,street_address``.
``family_name``, ``given_name`` and ``street_address`` are dropped here and never validated, stored or quoted.
Rules: ``patient_id`` required, <= 64 bytes; ``birth_date`` optional ISO 8601 date; ``sex`` optional,
<= 16 bytes; ``postal_code`` optional, kept as CONTRACT §7 says (HIPAA Safe Harbor: the first three digits
of a US ZIP code, ``000`` for the restricted areas, anything else dropped: never a rejection).
The last row of a ``patient_id`` in the file wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import PATIENTS
from workers.formats.common import (
    DEFAULT_BLOCK_BYTES,
    CsvRead,
    ParseResult,
    RowChecks,
    assemble,
    parse_csv_stream,
    read_csv_strings,
)
from workers.formats.values import iso_date, max_bytes, required, safe_harbor_postal_code

__all__ = ["HEADER", "KEPT", "parse_patients", "parse_patients_stream", "validate_patients"]

HEADER = ("patient_id", "family_name", "given_name", "birth_date", "sex", "postal_code", "street_address")
KEPT = ("patient_id", "birth_date", "sex", "postal_code")
"""The only columns read past the header: names and street addresses are not among them."""


def parse_patients(data: bytes) -> ParseResult:
    """Good rows (``PATIENTS`` + ``source_line``), rejected rows with reasons, in-file duplicates."""
    read = read_csv_strings(data, HEADER, KEPT, PATIENTS)
    if isinstance(read, ParseResult):
        return read
    return _with_malformed(validate_patients(read.columns, read.lines), read)


def parse_patients_stream(chunks: Iterable[bytes], *, block_size: int = DEFAULT_BLOCK_BYTES) -> Iterator[ParseResult]:
    """:func:`parse_patients` block by block (bounded memory); duplicates resolved within a block."""

    def validate(read: CsvRead) -> ParseResult:
        return _with_malformed(validate_patients(read.columns, read.lines), read)

    return parse_csv_stream(chunks, HEADER, KEPT, PATIENTS, validate, block_size=block_size)


def _with_malformed(result: ParseResult, read: CsvRead) -> ParseResult:
    rejected = pa.concat_tables([read.malformed, result.rejected]).sort_by("line_number")
    return ParseResult(result.good, rejected, result.duplicates)


def validate_patients(
    columns: Mapping[str, pa.Array],
    lines: pa.Array,
    checks: RowChecks | None = None,
    labels: Mapping[str, str] | None = None,
) -> ParseResult:
    """Validate string columns ``KEPT`` (trimmed, blank = null) of rows starting at ``lines``.

    ``checks`` may carry failures found earlier (e.g. by the FHIR mapper); ``labels`` renames columns in
    ``detail`` (e.g. FHIR element paths).
    """
    name = dict(zip(KEPT, KEPT, strict=True)) | dict(labels or {})  # pragma: no mutate (equal lengths)
    checks = checks or RowChecks(len(lines))
    patient_id = columns["patient_id"]
    required(checks, patient_id, name["patient_id"])
    typed = {
        "patient_id": max_bytes(checks, patient_id, name["patient_id"], 64),
        "birth_date": iso_date(checks, columns["birth_date"], name["birth_date"]),
        "sex": max_bytes(checks, columns["sex"], name["sex"], 16),
        "postal_code": safe_harbor_postal_code(columns["postal_code"]),
    }
    fits = pc.less_equal(pc.binary_length(patient_id), 64)
    no_id = pa.scalar(None, pa.string())  # pragma: no mutate (a null of any type gives string)
    record_id = pc.if_else(fits, patient_id, no_id)  # pragma: no mutate (a null of any type gives string)
    return assemble(typed, lines, checks, PATIENTS, record_id, ("patient_id",))
