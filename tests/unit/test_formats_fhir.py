"""parse_fhir: the documented FHIR R4 mapping, rejections, and no names or addresses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from workers.formats.fhir import parse_fhir


def ndjson(*resources: Any) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in resources) + b"\n"


PATIENT = {
    "resourceType": "Patient",
    "id": "F1",
    "name": [{"family": "Zyxwvut", "given": ["Qwertyuiop"]}],
    "telecom": [{"system": "phone", "value": "555-0100"}],
    "gender": "female",
    "birthDate": "1971-03-04",
    "address": [{"line": ["742 Evergreen Terrace"], "city": "Springfield", "postalCode": "94110"}],
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "FE1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
    "subject": {"reference": "Patient/F1"},
    "participant": [{"individual": {"reference": "Practitioner/DR9"}}],
    "serviceProvider": {"reference": "Organization/ORG1"},
    "period": {"start": "2026-01-01T10:00:00+01:00", "end": "2026-01-02T10:00:00+01:00"},
    "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}]}],
}


def test_patient_and_encounter_mapping() -> None:
    result = parse_fhir(ndjson(PATIENT, ENCOUNTER))
    assert result.rejected.num_rows == 0
    assert result.patients.to_pylist() == [
        {"patient_id": "F1", "birth_date": dt.date(1971, 3, 4), "sex": "female", "postal_code": "941",
         "source_line": 1}
    ]  # fmt: skip
    (enc,) = result.encounters.to_pylist()
    assert enc["encounter_id"] == "FE1"
    assert enc["patient_id"] == "F1"
    assert enc["provider_id"] == "DR9"
    assert enc["encounter_type"] == "IMP"
    assert enc["primary_dx"] == "I10"
    assert enc["length_of_stay_hours"] == 24.0
    assert enc["admit_at"] == dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
    assert enc["source_line"] == 2


def test_no_name_address_or_telecom_anywhere() -> None:
    result = parse_fhir(ndjson(PATIENT, PATIENT | {"id": "F2", "birthDate": "1971"}))
    dumped = repr(result.patients.to_pylist()) + repr(result.rejected.to_pylist())
    for secret in ("Zyxwvut", "Qwertyuiop", "Evergreen", "Springfield", "555-0100"):
        assert secret not in dumped


def test_fallbacks_service_provider_contained_diagnosis_r5_class() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "FE2",
        "class": [{"coding": [{"code": "AMB"}]}],
        "subject": {"reference": "https://fhir.example.org/r4/Patient/F1/_history/3"},
        "serviceProvider": {"reference": "Organization/ORG1"},
        "actualPeriod": {"start": "2026-01-01T10:00:00Z"},
        "contained": [
            {"resourceType": "Condition", "id": "c2", "code": {"coding": [{"code": "E11"}]}},
            {"resourceType": "Condition", "id": "c1", "code": {"coding": [{"code": "J45"}]}},
        ],
        "diagnosis": [{"condition": {"reference": "#c2"}, "rank": 2}, {"condition": {"reference": "#c1"}, "rank": 1}],
    }
    (row,) = parse_fhir(ndjson(enc)).encounters.to_pylist()
    assert (row["patient_id"], row["provider_id"], row["encounter_type"], row["primary_dx"]) == (
        "F1",
        "ORG1",
        "AMB",
        "J45",
    )
    assert row["discharge_at"] is None
    assert row["length_of_stay_hours"] is None


@pytest.mark.parametrize(
    ("line", "reason", "detail_prefix"),
    [
        (b"{not json", "malformed_row", "line:"),
        (b"[1, 2]", "malformed_row", "line:"),
        (orjson.dumps({"id": "O1"}), "malformed_row", "resourceType:"),
        (orjson.dumps(PATIENT | {"id": None}), "missing_field", "Patient.id:"),
        (orjson.dumps(PATIENT | {"id": 7}), "malformed_row", "Patient.id:"),
        (orjson.dumps(PATIENT | {"birthDate": "1971-03"}), "invalid_date", "Patient.birthDate:"),
        (orjson.dumps(ENCOUNTER | {"subject": {"reference": "Group/G1"}}), "invalid_reference", "Encounter.subject"),
        (orjson.dumps(ENCOUNTER | {"subject": None}), "missing_field", "Encounter.subject.reference:"),
        (orjson.dumps(ENCOUNTER | {"period": {"start": "2026-01-01"}}), "invalid_timestamp", "Encounter.period.start:"),
        (
            orjson.dumps(ENCOUNTER | {"period": {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}),
            "discharge_before_admit",
            "Encounter.period.end:",
        ),
    ],
)
def test_bad_lines(line: bytes, reason: str, detail_prefix: str) -> None:
    result = parse_fhir(ndjson(PATIENT, b"", line))
    assert result.patients.column("patient_id").to_pylist() == ["F1"]
    (rejected,) = result.rejected.to_pylist()
    assert (rejected["line_number"], rejected["reason"]) == (3, reason)
    assert rejected["detail"].startswith(detail_prefix)


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\xff\xfe{}", "not_utf8"), (b"patient_id,sex\nP1,F\n", "unreadable")],
)
def test_whole_file_rejections(data: bytes, reason: str) -> None:
    result = parse_fhir(data)
    assert result.file_rejected
    assert result.rows_in == 1
    assert result.rejected.column("reason").to_pylist() == [reason]


def test_empty_file_is_empty_not_rejected() -> None:
    result = parse_fhir(b"\n")
    assert result.rows_in == 0
    assert not result.file_rejected


def test_duplicate_ids_keep_the_last_line() -> None:
    result = parse_fhir(ndjson(PATIENT, PATIENT | {"gender": "other"}))
    assert result.duplicates == 1
    assert result.patients.column("sex").to_pylist() == ["other"]


def test_other_resource_types_are_skipped_and_counted_not_quarantined() -> None:
    lines = [
        orjson.dumps(PATIENT),
        orjson.dumps({"resourceType": "Observation", "id": "O1"}),
        orjson.dumps({"resourceType": "Observation", "id": "O2"}),
        orjson.dumps({"resourceType": "Condition", "id": "C1"}),
        orjson.dumps({"resourceType": "../../etc", "id": "X"}),
    ]
    result = parse_fhir(ndjson(*lines))
    assert result.patients.num_rows == 1
    assert result.rejected.num_rows == 0
    assert dict(result.skipped) == {"Observation": 2, "Condition": 1, "other": 1}
