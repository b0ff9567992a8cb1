"""Stage: parse an insurance-claims CSV (CONTRACT §8) into ``schemas.arrow.CLAIMS`` rows.

Input header: ``claim_id,line_number,patient_id,provider_npi,service_date,procedure_code,dx_code,
billed_amount,allowed_amount,paid_amount,status,denial_reason``.
Rules: ``claim_id``, ``patient_id`` required, <= 64 bytes; ``line_number`` required positive integer;
``provider_npi`` optional, 10 digits with a valid NPI check digit (Luhn over ``80840`` + the first nine,
``invalid_npi``); ``service_date`` required ISO 8601 date; ``procedure_code`` optional, a CPT or HCPCS Level II
code (``invalid_procedure_code``, see :mod:`workers.formats.codes`); ``dx_code`` optional, an ICD-10-CM code
(claims are coded in ICD-10-CM under HIPAA 5010; upper-cased, ``invalid_dx_code``); amounts optional
``numeric(12,2)`` read as exact decimals (at most 10 integer digits and 2 decimals, sign allowed, never through
a float: ``invalid_amount``); ``status`` required, one of ``paid``/``denied``/``pending`` (case-insensitive, stored
lower-case); ``denial_reason`` optional, <= 256 bytes. The last row of a (claim_id, line_number) in the file wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import CLAIMS
from workers.formats.codes import CPT_HCPCS_PATTERN, ICD10_CM_PATTERN
from workers.formats.common import (
    DEFAULT_BLOCK_BYTES,
    INVALID_DX_CODE,
    INVALID_PROCEDURE_CODE,
    INVALID_STATUS,
    CsvRead,
    ParseResult,
    RowChecks,
    assemble,
    parse_csv_stream,
    read_csv_strings,
)
from workers.formats.values import iso_date, matches, max_bytes, money, npi, positive_int, required

__all__ = ["CLAIM_STATUSES", "HEADER", "parse_claims", "parse_claims_stream", "validate_claims"]

HEADER = (
    "claim_id",
    "line_number",
    "patient_id",
    "provider_npi",
    "service_date",
    "procedure_code",
    "dx_code",
    "billed_amount",
    "allowed_amount",
    "paid_amount",
    "status",
    "denial_reason",
)
CLAIM_STATUSES = ("paid", "denied", "pending")


def parse_claims(data: bytes) -> ParseResult:
    """Good rows (``CLAIMS`` + ``source_line``), rejected rows with reasons, in-file duplicates."""
    read = read_csv_strings(data, HEADER, HEADER, CLAIMS)
    if isinstance(read, ParseResult):
        return read
    return validate_claims(read)


def parse_claims_stream(chunks: Iterable[bytes], *, block_size: int = DEFAULT_BLOCK_BYTES) -> Iterator[ParseResult]:
    """:func:`parse_claims` block by block (bounded memory); duplicates resolved within a block."""
    return parse_csv_stream(chunks, HEADER, HEADER, CLAIMS, validate_claims, block_size=block_size)


def validate_claims(read: CsvRead) -> ParseResult:
    """Validate one block of claims rows read as strings."""
    cols, lines = read.columns, read.lines
    checks = RowChecks(len(lines))
    for column in ("claim_id", "line_number", "patient_id", "service_date", "status"):
        required(checks, cols[column], column)
    typed = {
        "claim_id": max_bytes(checks, cols["claim_id"], "claim_id", 64),
        "line_number": positive_int(checks, cols["line_number"], "line_number"),
        "patient_id": max_bytes(checks, cols["patient_id"], "patient_id", 64),
        "provider_npi": npi(checks, cols["provider_npi"], "provider_npi"),
        "service_date": iso_date(checks, cols["service_date"], "service_date"),
        "procedure_code": matches(
            checks,
            pc.utf8_upper(cols["procedure_code"]),
            "procedure_code",
            CPT_HCPCS_PATTERN,
            INVALID_PROCEDURE_CODE,
            "not a CPT or HCPCS Level II code",
        ),
        "dx_code": matches(
            checks,
            pc.utf8_upper(cols["dx_code"]),
            "dx_code",
            ICD10_CM_PATTERN,
            INVALID_DX_CODE,
            "not an ICD-10-CM code",
        ),
        "billed_amount": money(checks, cols["billed_amount"], "billed_amount"),
        "allowed_amount": money(checks, cols["allowed_amount"], "allowed_amount"),
        "paid_amount": money(checks, cols["paid_amount"], "paid_amount"),
        "status": _status(checks, cols["status"]),
        "denial_reason": max_bytes(checks, cols["denial_reason"], "denial_reason", 256),
    }
    record_id = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(cols["claim_id"], 0, 64), pc.utf8_slice_codeunits(cols["line_number"], 0, 10), ":"
    )
    result = assemble(typed, lines, checks, CLAIMS, record_id, ("claim_id", "line_number"))
    rejected = pa.concat_tables([read.malformed, result.rejected]).sort_by("line_number")
    return ParseResult(result.good, rejected, result.duplicates)


def _status(checks: RowChecks, values: pa.Array) -> pa.Array:
    """Lower-cased status; anything but paid/denied/pending fails (Redshift has no CHECK constraint). A failing
    row is rejected whole, so its value is returned as is (never read)."""
    status = pc.utf8_lower(values)
    bad = pc.and_(pc.is_valid(status), pc.invert(pc.is_in(status, value_set=pa.array(CLAIM_STATUSES))))
    checks.add(bad, INVALID_STATUS, "status: not one of paid, denied, pending")
    return status
