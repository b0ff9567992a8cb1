"""The ehr pipeline's pure routing and parse dispatch (workers.pipelines.ehr) and the claims parse wrapper."""

from __future__ import annotations

import pytest

from tests.helpers.batch import CLAIMS_HEADER, ENCOUNTERS_HEADER, PATIENTS_HEADER, claim, csv_bytes, encounter, patient
from workers.pipelines.claims import parse_claims_file
from workers.pipelines.ehr import parse_ehr_file, route
from workers.pipelines.files import ParsedFile, StreamParser


def one(parse: StreamParser, key: str, data: bytes) -> ParsedFile:
    """The single chunk a small file parses into."""
    (parsed,) = list(parse(key, iter([data])))
    return parsed


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("raw/ehr/patients/2026/01/p.csv", "patients"),
        ("raw/ehr/encounters/e.csv", "encounters"),
        ("raw/ehr/fhir/export/Patient.ndjson", "fhir"),
        ("backfill/ehr/fhir/x.ndjson", "fhir"),
        ("raw/ehr/patients", None),
        ("raw/ehr/other/x.csv", None),
        ("raw/claims/c.csv", None),
    ],
)
def test_route(key: str, kind: str | None) -> None:
    assert route(key) == kind


def test_dispatch_by_kind() -> None:
    parsed = one(parse_ehr_file, "raw/ehr/patients/p.csv", csv_bytes(PATIENTS_HEADER, [patient("P1")]))
    assert list(parsed.tables) == ["patients"]
    assert parsed.tables["patients"].num_rows == 1
    parsed = one(parse_ehr_file, "raw/ehr/encounters/e.csv", csv_bytes(ENCOUNTERS_HEADER, [encounter("E1")]))
    assert list(parsed.tables) == ["encounters"]
    assert parsed.tables["encounters"].num_rows == 1
    parsed = one(parse_ehr_file, "raw/ehr/fhir/f.ndjson", b'{"resourceType": "Patient", "id": "F1"}\n')
    assert parsed.tables["patients"].num_rows == 1
    assert parsed.tables["encounters"].num_rows == 0


def test_patients_csv_under_the_encounters_prefix_is_a_bad_header() -> None:
    parsed = one(parse_ehr_file, "raw/ehr/encounters/p.csv", csv_bytes(PATIENTS_HEADER, [patient("P1")]))
    assert parsed.tables["encounters"].num_rows == 0
    assert parsed.rejected.column("reason").to_pylist() == ["bad_header"]


def test_unknown_prefix_is_rejected_whole() -> None:
    parsed = one(parse_ehr_file, "raw/ehr/misc/x.csv", b"a\n")
    assert parsed.tables == {}
    assert parsed.rejected.to_pylist()[0]["reason"] == "unknown_prefix"
    assert parsed.rejected.to_pylist()[0]["line_number"] is None


def test_claims_wrapper() -> None:
    parsed = one(parse_claims_file, "raw/claims/c.csv", csv_bytes(CLAIMS_HEADER, [claim("C1"), claim("C1")]))
    assert parsed.tables["claims"].num_rows == 1
    assert parsed.duplicates == 1
