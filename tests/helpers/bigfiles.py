"""Large batch files generated on the fly (tests and ``make bigfiles``): claims CSV and FHIR NDJSON.

Every generator writes to a file object in pieces (memory does not grow with the size) and returns what the
pipeline must make of it, so a test can check a multi-chunk load exactly.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from workers.formats.claims import HEADER as CLAIMS_HEADER

__all__ = ["Expected", "claims_lines", "fhir_lines", "write_claims", "write_fhir"]

NPI = "1234567893"  # a valid NPI (Luhn with prefix 80840)
BAD_LINES = {1_000: "invalid_npi", 50_000: "invalid_status", 123_457: "invalid_amount"}
"""Line -> reason of the bad rows the claims generator plants (lines beyond the file are not planted)."""


@dataclass
class Expected:
    rows: int = 0  # data lines
    good_keys: int = 0  # distinct (claim_id, line_number) loaded
    duplicates: int = 0
    bad: dict[int, str] = field(default_factory=dict)
    bytes: int = 0


def claims_lines(rows: int, expected: Expected) -> Iterator[bytes]:
    """Header + ``rows`` claim lines. Claim ``C<i>`` line 1 each; every 50,000th line repeats an earlier
    claim (a duplicate across chunks: the later line wins); the lines of :data:`BAD_LINES` are bad."""
    yield (",".join(CLAIMS_HEADER) + "\n").encode()
    for i in range(rows):
        line = i + 2
        claim_id, paid = f"C{i:09d}", "100.25"
        npi, status, billed = NPI, "paid", "150.00"
        if line % 50_001 == 0:
            claim_id, paid = f"C{(i // 2):09d}", "99.99"
            expected.duplicates += 1
        reason = BAD_LINES.get(line)
        if reason == "invalid_npi":
            npi = "1234567890"
        elif reason == "invalid_status":
            status = "approved"
        elif reason == "invalid_amount":
            billed = "12.345"
        if reason:
            expected.bad[line] = reason
            if claim_id != f"C{i:09d}":
                expected.duplicates -= 1
        yield (
            f"{claim_id},1,P{i % 9973},{npi},2026-01-{1 + i % 28:02d},99213,I10,{billed},120.50,{paid},{status},\n"
        ).encode()
    expected.rows = rows
    expected.good_keys = rows - len(expected.bad) - expected.duplicates


def fhir_lines(resources: int, expected: Expected) -> Iterator[bytes]:
    """``resources`` NDJSON lines: Patients, Encounters and Observations (skipped) in turn."""
    for i in range(resources):
        kind = i % 3
        if kind == 0:
            doc = {"resourceType": "Patient", "id": f"P{i}", "gender": "female", "birthDate": "1970-01-01",
                   "name": [{"family": "Zyxwvut", "given": ["Qwertyuiop"]}],
                   "address": [{"line": ["742 Evergreen Terrace"], "postalCode": "94110"}]}  # fmt: skip
            expected.good_keys += 1
        elif kind == 1:
            doc = {"resourceType": "Encounter", "id": f"E{i}", "subject": {"reference": f"Patient/P{i - 1}",
                   "display": "Zyxwvut Qwertyuiop"}, "class": {"code": "IMP", "display": "DISPLAY-CLASS"},
                   "participant": [{"individual": {"reference": "Practitioner?identifier="
                                                                "http://hl7.org/fhir/sid/us-npi|1234567893",
                                                   "display": "DISPLAY-Dr Zyxwvut"}}],
                   "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10",
                                               "display": "DISPLAY-Hypertension"}], "text": "DISPLAY-TEXT"}],
                   "period": {"start": "2026-01-01T08:00:00Z", "end": "2026-01-02T08:00:00Z"}}  # fmt: skip
            expected.good_keys += 1
        else:
            doc = {"resourceType": "Observation", "id": f"O{i}", "status": "final"}
        yield orjson.dumps(doc) + b"\n"
    expected.rows = resources


def _write(out: BinaryIO, lines: Iterator[bytes], compress: bool, expected: Expected) -> None:
    target: BinaryIO = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) if compress else out  # type: ignore[assignment]
    buffer: list[bytes] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if len(buffer) >= 10_000:
            target.write(b"".join(buffer))
            buffer.clear()
    target.write(b"".join(buffer))
    if compress:
        target.close()
    expected.bytes = size


def write_claims(out: BinaryIO, rows: int, *, compress: bool = False) -> Expected:
    expected = Expected()
    _write(out, claims_lines(rows, expected), compress, expected)
    return expected


def write_fhir(out: BinaryIO, resources: int, *, compress: bool = False) -> Expected:
    expected = Expected()
    _write(out, fhir_lines(resources, expected), compress, expected)
    return expected
