"""parse_fhir: the documented FHIR R4 mapping, rejections, and no names or addresses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from workers.formats.common import REJECTED
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


NPI = "http://hl7.org/fhir/sid/us-npi"


def _encounter(**over: Any) -> dict[str, Any]:
    doc = {k: v for k, v in ENCOUNTER.items() if k not in over}
    return doc | {k: v for k, v in over.items() if v is not None}


def _one_encounter(doc: dict[str, Any]) -> dict[str, Any]:
    result = parse_fhir(ndjson(doc))
    assert result.rejected.num_rows == 0, result.rejected.to_pylist()
    (row,) = result.encounters.to_pylist()
    return row


@pytest.mark.parametrize(
    ("subject", "patient_id"),
    [
        ({"reference": "Patient/123"}, "123"),
        ({"reference": "Patient/123/_history/4"}, "123"),
        ({"reference": "https://ehr.example.org/fhir/R4/Patient/123"}, "123"),
        ({"reference": "https://ehr.example.org/fhir/R4/Patient/123/_history/2"}, "123"),
        ({"reference": "Patient?identifier=urn:oid:1.2.3|MRN-77"}, "MRN-77"),
        ({"reference": "Patient?identifier=urn%3Aoid%3A1.2.3%7CMRN-78"}, "MRN-78"),
        ({"reference": "#pt"}, "MRN-9"),
        ({"reference": "urn:uuid:7f1b2c3d-0000-4000-8000-000000000001"}, "7f1b2c3d-0000-4000-8000-000000000001"),
        ({"type": "Patient", "identifier": {"system": "urn:oid:1.2.3", "value": "MRN-5"}}, "MRN-5"),
        ({"reference": "Patient/123", "display": "Zyxwvut Qwertyuiop"}, "123"),
    ],
)
def test_subject_reference_forms(subject: dict[str, Any], patient_id: str) -> None:
    contained = [{"resourceType": "Patient", "id": "pt", "identifier": [{"value": "MRN-9"}],
                  "name": [{"family": "Zyxwvut"}]}]  # fmt: skip
    assert _one_encounter(_encounter(subject=subject, contained=contained))["patient_id"] == patient_id


@pytest.mark.parametrize(
    "subject",
    [
        {"reference": "Group/1"},
        {"reference": "Practitioner?identifier=x|1"},
        {"reference": "#nope"},
        {"reference": "x"},
    ],
)
def test_subject_reference_to_something_else_is_rejected(subject: dict[str, Any]) -> None:
    result = parse_fhir(ndjson(_encounter(subject=subject)))
    assert [r["reason"] for r in result.rejected.to_pylist()] == ["invalid_reference"]


@pytest.mark.parametrize(
    ("participant", "provider_id"),
    [
        ([{"individual": {"reference": "Practitioner/DR9"}}], "DR9"),
        ([{"actor": {"reference": "https://ehr.example.org/fhir/Practitioner/DR9/_history/1"}}], "DR9"),
        ([{"individual": {"reference": f"Practitioner?identifier={NPI}|9999974493"}}], "9999974493"),
        ([{"individual": {"reference": "Practitioner?identifier=urn:local|77"}}], "ORG1"),  # not an NPI: skipped
        ([{"individual": {"reference": "#dr"}}], "1234567893"),
        ([{"individual": {"type": "Practitioner", "identifier": {"system": NPI, "value": "1245319599"}}}],
         "1245319599"),
        ([{"individual": {"reference": "RelatedPerson/R1"}}, {"individual": {"reference": "Practitioner/DR2"}}],
         "DR2"),
        ([], "ORG1"),
    ],
)  # fmt: skip
def test_practitioner_reference_forms(participant: list[dict[str, Any]], provider_id: str) -> None:
    contained = [{"resourceType": "Practitioner", "id": "dr", "identifier": [
        {"system": "urn:local", "value": "L1"}, {"system": NPI, "value": "1234567893"}]}]  # fmt: skip
    row = _one_encounter(_encounter(participant=participant, contained=contained))
    assert row["provider_id"] == provider_id


def test_r5_encounter_class_actual_period_and_diagnosis() -> None:
    doc = _encounter(
        **{"class": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}]}]},
        period=None,
        reasonCode=None,
        actualPeriod={"start": "2026-01-01T10:00:00Z", "end": "2026-01-01T12:00:00Z"},
        diagnosis=[
            {"condition": [{"concept": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "J18.9"}]}}],
             "use": [{"coding": [{"code": "billing"}]}]},
        ],
    )  # fmt: skip
    doc.pop("period", None)
    doc.pop("reasonCode", None)
    row = _one_encounter(doc)
    assert (row["encounter_type"], row["primary_dx"], row["length_of_stay_hours"]) == ("EMER", "J18.9", 2.0)


def test_diagnosis_by_rank_then_reason_code_then_reason_reference() -> None:
    contained = [
        {"resourceType": "Condition", "id": "c1", "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                       "code": "38341003", "display": "HTN"}]}},
        {"resourceType": "Condition", "id": "c2", "code": {"coding": [
            {"system": "http://snomed.info/sct", "code": "44054006"},
            {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}},
    ]  # fmt: skip
    ranked = [{"condition": {"reference": "#c1"}, "rank": 2}, {"condition": {"reference": "#c2"}, "rank": 1}]
    row = _one_encounter(_encounter(contained=contained, diagnosis=ranked))
    assert row["primary_dx"] == "E11.9"  # rank 1; its ICD-10 coding preferred over SNOMED CT
    doc = _encounter(contained=contained)
    doc.pop("reasonCode")
    doc["reasonReference"] = [{"reference": "#c1"}]
    assert _one_encounter(doc)["primary_dx"] == "38341003"  # SNOMED CT stored as given


def test_icd10_code_of_the_wrong_shape_is_rejected_with_its_line() -> None:
    bad = _encounter(reasonCode=[{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "HTN!"}]}])
    result = parse_fhir(ndjson(PATIENT, bad))
    assert [(r["line_number"], r["reason"]) for r in result.rejected.to_pylist()] == [(2, "invalid_dx_code")]


def test_no_display_text_anywhere_in_the_output() -> None:
    doc = _encounter(
        subject={"reference": "Patient/F1", "display": "DISPLAY-SUBJECT"},
        participant=[{"individual": {"reference": "Practitioner/DR9", "display": "DISPLAY-DOCTOR"}}],
        serviceProvider={"reference": "Organization/ORG1", "display": "DISPLAY-ORG"},
        reasonCode=[{"coding": [{"code": "I10", "display": "DISPLAY-CODE"}], "text": "DISPLAY-TEXT"}],
    )
    result = parse_fhir(ndjson(PATIENT, doc, {"resourceType": "Encounter", "id": "X", "subject": {"display": "D2"}}))
    text = str(result.patients.to_pylist()) + str(result.encounters.to_pylist()) + str(result.rejected.to_pylist())
    assert "DISPLAY" not in text
    assert "Zyxwvut" not in text
    assert "Evergreen" not in text


def test_non_string_elements_are_rejected_naming_each_element() -> None:
    patient = PATIENT | {"birthDate": 19710304, "gender": 1, "address": [{"postalCode": 94110}]}
    encounter = {"resourceType": "Encounter", "id": "E", "subject": {"reference": "Patient/1"},
                 "class": {"code": 5}, "period": {"start": 5, "end": 6}}  # fmt: skip
    result = parse_fhir(ndjson(patient, encounter, ENCOUNTER | {"id": 7}))
    assert result.rejected.to_pylist() == [
        {"line_number": 1, "reason": "malformed_row", "record_id": "F1",
         "detail": "Patient.address[0].postalCode: not a string; Patient.birthDate: not a string; "
                   "Patient.gender: not a string"},
        {"line_number": 2, "reason": "malformed_row", "record_id": "E",
         "detail": "Encounter.class.code: not a string; Encounter.period.end: not a string; "
                   "Encounter.period.start: not a string; Encounter.period.start: required value is missing"},
        {"line_number": 3, "reason": "malformed_row", "record_id": None,
         "detail": "Encounter.id: not a string; Encounter.id: required value is missing"},
    ]  # fmt: skip


def test_file_and_line_rejection_details() -> None:
    for data in (b"\xff\xfe{}", b"[1]\n"):
        assert parse_fhir(data).rejected.schema == REJECTED
    assert parse_fhir(b"\xff\xfe{}").rejected.to_pylist() == [
        {"line_number": None, "reason": "not_utf8", "detail": "file: not valid UTF-8", "record_id": None}
    ]
    assert parse_fhir(b"[1]\nnot json\n").rejected.to_pylist() == [
        {"line_number": None, "reason": "unreadable", "detail": "file: not FHIR NDJSON (no line is a JSON object)",
         "record_id": None}
    ]  # fmt: skip
    # Bad lines before and after good ones are each rejected, and every line after them is still read.
    result = parse_fhir(ndjson(b"not json", b"[1]", PATIENT, b"{bad", b"3", PATIENT | {"id": "F2"}))
    assert result.rejected.to_pylist() == [
        {"line_number": 1, "reason": "malformed_row", "detail": "line: not valid JSON", "record_id": None},
        {"line_number": 2, "reason": "malformed_row", "detail": "line: not a JSON object", "record_id": None},
        {"line_number": 4, "reason": "malformed_row", "detail": "line: not valid JSON", "record_id": None},
        {"line_number": 5, "reason": "malformed_row", "detail": "line: not a JSON object", "record_id": None},
    ]
    assert result.patients.column("patient_id").to_pylist() == ["F1", "F2"]
    assert result.rows_in == 6


def test_a_line_longer_than_the_limit_rejects_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.formats import common, fhir

    monkeypatch.setattr(common, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(fhir, "MAX_LINE_BYTES", 100)
    parts = list(fhir.parse_fhir_stream([orjson.dumps(PATIENT) + b"\n" + b"x" * 300], block_size=10))
    assert parts[-1].rejected.to_pylist() == [
        {"line_number": None, "reason": "unreadable", "detail": "file: a line is longer than 100 bytes",
         "record_id": None}
    ]  # fmt: skip


def test_only_the_first_block_without_objects_rejects_the_file() -> None:
    from workers.formats.fhir import parse_fhir_stream

    good = orjson.dumps(PATIENT)
    # First block: a bad line and an object -> not rejected; a later block of bad lines only -> rejected lines.
    parts = list(parse_fhir_stream([b"not json\n" + good + b"\n" + b"[1]\n[2]\n"], block_size=len(good) + 10))
    assert not any(p.file_rejected for p in parts)
    assert [r["line_number"] for p in parts for r in p.rejected.to_pylist()] == [1, 3, 4]
    # A first block of objects only, then a block of bad lines: those lines are rejected, not the file.
    parts = list(parse_fhir_stream([good + b"\n" + b"[1]\n"], block_size=len(good)))
    assert not any(p.file_rejected for p in parts)
    assert [r["line_number"] for p in parts for r in p.rejected.to_pylist()] == [2]
    # A blank first block does not count: the first block with lines decides.
    parts = list(parse_fhir_stream([b"\n\n\n" + b"[1]\n"], block_size=2))
    assert parts[-1].file_rejected


def test_resource_type_labels_and_duplicates_of_both_kinds() -> None:
    # Only FHIR's own type names are counted by name (a made-up one could carry PHI): the rest are "other".
    lines = [PATIENT, PATIENT, ENCOUNTER, ENCOUNTER, {"resourceType": "Observation"}, {"resourceType": "A" * 65},
             {"resourceType": ""}, {"resourceType": 5}]  # fmt: skip
    result = parse_fhir(ndjson(*lines))
    assert result.duplicates == 2
    assert dict(result.skipped) == {"Observation": 1, "other": 1}
    assert [(r["line_number"], r["detail"]) for r in result.rejected.to_pylist()] == [
        (7, "resourceType: missing or not a string"),
        (8, "resourceType: missing or not a string"),
    ]


def test_contained_resources_need_an_id_and_a_dict() -> None:
    contained = ["junk", {"resourceType": "Condition", "code": {"coding": [{"code": "X1"}]}},
                 {"resourceType": "Condition", "id": "c1", "code": {"coding": [{"code": "38341003"}]}}]  # fmt: skip
    doc = _encounter(contained=contained, reasonCode=None, diagnosis=[{"condition": {"reference": "#c1"}}])
    assert _one_encounter(doc)["primary_dx"] == "38341003"


def test_participants_skip_non_objects_and_fall_back_to_contained_service_provider() -> None:
    contained = [{"resourceType": "Organization", "id": "o1", "identifier": [{"value": "ORG-7"}]}]
    doc = _encounter(participant=["junk", {"individual": {"reference": "Practitioner/DR2"}}])
    assert _one_encounter(doc)["provider_id"] == "DR2"
    doc = _encounter(participant=[{"individual": {"reference": "Patient/x"}}], contained=contained,
                     serviceProvider={"reference": "#o1"})  # fmt: skip
    assert _one_encounter(doc)["provider_id"] == "ORG-7"


def test_empty_class_list_is_no_type() -> None:
    assert _one_encounter(_encounter(**{"class": []}))["encounter_type"] is None


def test_diagnosis_rank_order_and_unranked_last() -> None:
    def cond(cid: str, code: str) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": cid, "code": {"coding": [{"system": "http://snomed.info/sct",
                                                                             "code": code}]}}  # fmt: skip

    contained = [cond("a", "111"), cond("b", "222"), cond("c", "333")]
    diagnosis = [{"condition": {"reference": "#a"}}, {"condition": {"reference": "#b"}, "rank": True},
                 {"condition": {"reference": "#c"}, "rank": 2_147_483_647}]  # fmt: skip
    # A numeric rank beats no rank (and a boolean is no rank), even positiveInt's maximum 2^31 - 1.
    assert _one_encounter(_encounter(contained=contained, diagnosis=diagnosis, reasonCode=None))["primary_dx"] == "333"
    # Unranked: file order.
    doc = _encounter(contained=contained, diagnosis=diagnosis[:2], reasonCode=None)
    assert _one_encounter(doc)["primary_dx"] == "111"


def test_diagnosis_sources_in_order_and_their_reference_forms() -> None:
    snomed = "http://snomed.info/sct"
    contained = [{"resourceType": "Condition", "id": "c1", "code": {"coding": [{"system": snomed, "code": "111"}]}},
                 {"resourceType": "Observation", "id": "o1", "code": {"coding": [{"system": snomed, "code": "999"}]}},
                 {"id": "u1", "code": {"coding": [{"system": snomed, "code": "222"}]}}]  # fmt: skip

    def dx(**over: Any) -> Any:
        return _one_encounter(_encounter(contained=contained, **({"reasonCode": None} | over)))["primary_dx"]

    # A diagnosis that gives no code falls through to the next one, then to reasonCode, reasonReference, reason.
    assert dx(diagnosis=[{"condition": {"reference": "#o1"}}, {"condition": {"reference": "#c1"}}]) == "111"
    assert dx(diagnosis=[{"condition": {"reference": "#nope"}}],
              reasonCode=[{"coding": []}, {"coding": [{"code": "333"}]}]) == "333"  # fmt: skip
    assert dx(reasonReference=[{"reference": "c1"}, {"reference": "#u1"}]) == "222"  # a type-less contained resource
    assert dx(reason=[{"value": [{"reference": {"reference": "#o1"}}, {"reference": {"reference": "#c1"}}]}]) == "111"
    assert dx(reason=[{"value": [{"concept": {"coding": [{"code": "444"}]}}]}]) == "444"
    assert dx(reason=[{"value": [{"concept": {"coding": []}, "reference": {"reference": "#c1"}}]}]) == "111"
    assert dx(reason=[{"value": {"reference": 5}}, {"value": {"reference": "#c1"}}]) == "111"
    assert dx(reason=[{"use": "x"}]) is None


def test_an_empty_file_and_postal_codes_of_odd_addresses() -> None:
    empty = parse_fhir(b"")
    assert (empty.rows_in, empty.rejected.num_rows, empty.rejected.schema) == (0, 0, REJECTED)
    odd = [PATIENT | {"id": "A", "address": []}, PATIENT | {"id": "B", "address": {"postalCode": "94110"}},
           PATIENT | {"id": "C", "address": [{"city": "x"}]}]  # fmt: skip
    result = parse_fhir(ndjson(*odd))
    assert result.rejected.num_rows == 0
    assert result.patients.column("postal_code").to_pylist() == [None, None, None]
