"""fhir_refs: every reference form resolve() documents, the NPI rule, code_of's choice of coding, is_icd10."""

from __future__ import annotations

from typing import Any

import pytest

from workers.formats.fhir_refs import NPI_SYSTEM, code_of, is_icd10, resolve

NPI_ID = {"system": NPI_SYSTEM, "value": "1234567893"}
CONTAINED: dict[str, dict[str, Any]] = {
    "p1": {"resourceType": "Patient", "id": "local-p1"},
    "p2": {"resourceType": "Patient", "id": 5},
    "p3": {"resourceType": "Patient", "id": "local-p3", "identifier": [{"system": "mrn", "value": " M3 "}]},
    "dr": {"resourceType": "Practitioner", "id": "dr", "identifier": [{"system": "x", "value": "X1"}, NPI_ID]},
}
PATIENT = ("Patient",)
PRACTITIONER = ("Practitioner",)


@pytest.mark.parametrize(
    ("reference", "expected", "resolved"),
    [
        ({"reference": "Patient/123"}, PATIENT, "123"),
        ({"reference": "Patient/AX/"}, PATIENT, "AX"),
        ({"reference": "X?identifier=s|1"}, ("X",), "1"),
        ({"reference": " Patient/123/ "}, PATIENT, "123"),
        ({"reference": "https://ehr.example/fhir/Patient/123/_history/2"}, PATIENT, "123"),
        ({"reference": "Patient/1/_history/2/_history/3"}, PATIENT, "1"),
        ({"reference": "Organization/123"}, PATIENT, None),
        ({"reference": "/123"}, PATIENT, None),
        ({"reference": "123"}, PATIENT, None),
        ({"reference": "Patient?identifier=urn:sys|P9"}, PATIENT, "P9"),
        ({"reference": "https://x/fhir/Patient/?identifier=urn%3Asys%7CP9"}, PATIENT, "P9"),
        ({"reference": "Patient?name=x&identifier=urn:sys|P9"}, PATIENT, "P9"),
        ({"reference": "Patient?identifier=&identifier=s|P9"}, PATIENT, "P9"),
        ({"reference": "Patient?identifier=a|b|C"}, PATIENT, "C"),
        ({"reference": "Patient?identifier=s|A=B"}, PATIENT, "A=B"),
        ({"reference": "Patient?identifier=P7"}, PATIENT, "P7"),
        ({"reference": "Patient?identifier=s| "}, PATIENT, None),
        ({"reference": "Organization?identifier=s|O1"}, PATIENT, None),
        ({"reference": f"Practitioner?identifier=x|1&identifier={NPI_SYSTEM}|1234567893"}, PRACTITIONER, "1234567893"),
        ({"reference": "Practitioner?identifier=x|1"}, PRACTITIONER, None),
        ({"reference": "#p1"}, PATIENT, "local-p1"),
        ({"reference": "#p2"}, PATIENT, None),
        ({"reference": "#p3"}, PATIENT, "M3"),
        ({"reference": "#dr"}, PRACTITIONER, "1234567893"),
        ({"reference": "#dr"}, PATIENT, None),
        ({"reference": "#nope"}, PATIENT, None),
        ({"reference": "urn:uuid:abc"}, PATIENT, "abc"),
        ({"reference": "urn:uuid:abc", "type": "Patient"}, PATIENT, "abc"),
        ({"reference": "urn:uuid:abc", "type": "Organization"}, PATIENT, None),
        ({"reference": "urn:uuid:"}, PATIENT, None),
        ({"identifier": {"system": "mrn", "value": "X"}}, PATIENT, "X"),
        ({"identifier": {"system": "mrn", "value": "X"}, "type": "Patient"}, PATIENT, "X"),
        ({"identifier": {"system": "mrn", "value": "X"}, "type": "Organization"}, PATIENT, None),
        ({"identifier": {"system": "mrn", "value": "X"}, "type": 5}, PATIENT, "X"),
        ({"reference": " ", "identifier": [{"value": "  "}, "junk", {"value": 5}, {"value": " V "}]}, PATIENT, "V"),
        ({"identifier": [{"system": "x", "value": "X"}, NPI_ID]}, PATIENT, "1234567893"),
        ({"identifier": {"system": "x", "value": "X"}}, PRACTITIONER, None),
        ({"identifier": [{"value": "X"}, NPI_ID]}, PRACTITIONER, "1234567893"),
        ({}, PATIENT, None),
        ("Patient/1", PATIENT, None),
    ],
)
def test_resolve(reference: Any, expected: tuple[str, ...], resolved: str | None) -> None:
    assert resolve(reference, expected, CONTAINED) == resolved


@pytest.mark.parametrize(
    ("concept", "code"),
    [
        ({"coding": [{"system": "http://snomed.info/sct", "code": "B"}]}, ("B", "http://snomed.info/sct")),
        ({"coding": [{"system": 5, "code": " A "}]}, ("A", None)),
        ({"coding": ["junk", {"code": 5}, {"code": " "}, {"code": "C"}]}, ("C", None)),
        (
            {"coding": [{"system": "s", "code": "S"}, {"system": "urn:x:ICD-10", "code": " I10 "}]},
            ("I10", "urn:x:ICD-10"),
        ),
        ({"coding": []}, (None, None)),
        ({"coding": {"code": "X"}}, (None, None)),
        ([{"coding": [{"code": "X"}]}], (None, None)),
        (None, (None, None)),
    ],
)
def test_code_of(concept: Any, code: tuple[str | None, str | None]) -> None:
    assert code_of(concept) == code


def test_is_icd10() -> None:
    assert is_icd10("urn:oid:2.16.840.1.113883.6.90")
    assert is_icd10("http://hl7.org/fhir/sid/icd-10-cm")
    assert is_icd10("urn:x:ICD-10-CM")
    assert not is_icd10("http://snomed.info/sct")
    assert not is_icd10(None)
