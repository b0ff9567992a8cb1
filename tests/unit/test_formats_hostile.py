"""The pure readers on hostile input (the handler-level answers: tests/integration/test_security_batch_files.py)."""

from __future__ import annotations

import orjson
import pyarrow as pa

from tests.helpers.batch import PATIENTS_HEADER, csv_bytes, patient
from workers.formats.common import NUL_DETAIL, REJECTED, rejected_rows, without_nul
from workers.formats.fhir import parse_fhir
from workers.formats.fhir_refs import RESOURCE_TYPES, items
from workers.formats.hl7 import read_hl7
from workers.formats.patients import parse_patients, parse_patients_stream

ENCOUNTER = {"resourceType": "Encounter", "id": "E1", "subject": {"reference": "Patient/P1"},
             "class": {"code": "IMP"}, "period": {"start": "2026-01-01T08:00:00Z"}}  # fmt: skip


def test_without_nul_moves_rows_to_rejected_at_their_line_and_cleans_details() -> None:
    good = pa.table({"patient_id": ["P1", "P\x002", None], "sex": ["f", "m", "x\x00"], "source_line": [2, 3, 4]})
    rejected = rejected_rows(9, "invalid_message", "message M\x001: MSH-7: missing", "M\x001")
    tables, out = without_nul({"patients": good}, rejected)
    assert tables["patients"].column("patient_id").to_pylist() == ["P1"]
    assert out.schema == REJECTED
    assert out.to_pylist() == [
        {"line_number": 9, "reason": "invalid_message", "detail": "message M1: MSH-7: missing", "record_id": "M\x001"},
        {"line_number": 3, "reason": "malformed_row", "detail": NUL_DETAIL, "record_id": None},
        {"line_number": 4, "reason": "malformed_row", "detail": NUL_DETAIL, "record_id": None},
    ]


def test_without_nul_leaves_clean_chunks_as_they_are() -> None:
    good = pa.table({"patient_id": ["P1"], "source_line": [2]})
    tables, out = without_nul({"patients": good, "empty": good.slice(0, 0)}, REJECTED.empty_table())
    assert tables["patients"] is good
    assert out.num_rows == 0


def test_csv_with_cr_alone_as_line_end_is_unreadable_not_empty() -> None:
    data = csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2")]).replace(b"\r\n", b"\r")
    result = parse_patients(data)
    assert result.file_rejected
    assert result.rejected.column("reason").to_pylist() == ["unreadable"]


def test_white_space_lines_are_blank_and_an_open_quote_says_how_far_it_runs() -> None:
    head = csv_bytes(PATIENTS_HEADER, [patient("P1")])
    data = head + b' \t \r\nP2,"Zyx,Q,,,,,\r\nP3,Z,Q,,,,\r\nP4,Z,Q,,,,\r\n'
    for block in (64, 1 << 20):
        results = list(parse_patients_stream([data], block_size=block))
        rejected = [row for r in results for row in r.rejected.to_pylist()]
        assert [(r["line_number"], r["reason"]) for r in rejected] == [(4, "malformed_row")]
        assert rejected[0]["detail"].endswith("; a quoted field runs over 3 lines")
        assert sum(r.good.num_rows for r in results) == 1


def test_fhir_elements_of_the_wrong_json_type_reject_their_line_only() -> None:
    odd = ENCOUNTER | {"participant": 5, "diagnosis": 7, "contained": 3, "reasonCode": 9, "reason": 1}
    deep = orjson.dumps(ENCOUNTER | {"id": "E2"})[:-1] + b',"diagnosis":[{"condition":' + b"[" * 1015
    deep += b"]" * 1015 + b"}]}"
    data = b"\n".join([orjson.dumps(odd), deep, orjson.dumps(ENCOUNTER | {"id": "E3", "reasonCode": {"x": 1}})])
    result = parse_fhir(data)
    assert result.encounters.column("encounter_id").to_pylist() == ["E1", "E3"]
    assert [(r["line_number"], r["reason"], r["detail"]) for r in result.rejected.to_pylist()] == [
        (2, "malformed_row", "resource: an element is shaped as FHIR does not allow (JSON type or nesting)")
    ]


def test_fhir_other_types_are_counted_by_known_names_only() -> None:
    lines = [{"resourceType": "Observation"}, {"resourceType": "Privatesson"}, {"resourceType": "MedicationRequest"}]
    result = parse_fhir(b"\n".join(orjson.dumps(line) for line in lines))
    assert dict(result.skipped) == {"Observation": 1, "other": 1, "MedicationRequest": 1}
    assert {"Patient", "Encounter", "Observation", "Bundle"} <= RESOURCE_TYPES
    assert items(None) == items(3) == items("x") == []
    assert items({"a": 1}) == [{"a": 1}]


def test_hl7_file_without_an_msh_segment_is_unreadable_and_white_space_is_empty() -> None:
    [chunk] = list(read_hl7("raw/ehr/hl7/x.hl7", iter([b"PID|1||P1\r", bytes(range(256))])))
    assert chunk.rejected.to_pylist() == [
        {"line_number": None, "reason": "unreadable", "detail": "file: not HL7 v2 (no MSH segment)", "record_id": None}
    ]
    assert list(read_hl7("raw/ehr/hl7/y.hl7", iter([b" \r\n\x0b\x1c\r"]))) == []


def test_without_nul_reads_every_table_and_large_strings_and_keeps_nulls() -> None:
    clean = pa.table({"patient_id": ["P1", None], "source_line": [2, 3]})  # a null is not a NUL
    no_lines = pa.table({"n": [1, 2], "code": pa.array(["a\x00", "b"], pa.large_string())})  # no source_line
    tables, out = without_nul({"clean": clean, "codes": no_lines}, REJECTED.empty_table())
    assert tables["clean"] is clean
    assert tables["codes"].to_pylist() == [{"n": 2, "code": "b"}]
    assert out.schema == REJECTED
    assert out.to_pylist() == [{"line_number": 0, "reason": "malformed_row", "detail": NUL_DETAIL, "record_id": None}]
