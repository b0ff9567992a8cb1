"""parse_patients: good rows, each bad-row reason, whole-file failures, names and addresses dropped."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.arrow import PATIENTS
from tests.helpers.batch import PATIENTS_HEADER, csv_bytes, patient
from workers.formats.patients import parse_patients


def test_good_rows_are_typed_and_pseudonymised() -> None:
    result = parse_patients(csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2", birth_date="", sex="")]))
    assert result.rejected.num_rows == 0
    assert result.good.schema.remove(result.good.schema.get_field_index("source_line")) == PATIENTS
    assert result.good.to_pylist() == [
        {"patient_id": "P1", "birth_date": dt.date(1980, 2, 29), "sex": "female", "postal_code": "021",
         "source_line": 2},
        {"patient_id": "P2", "birth_date": None, "sex": None, "postal_code": "021", "source_line": 3},
    ]  # fmt: skip


def test_names_and_street_addresses_never_appear_in_any_output() -> None:
    rows = [patient("P1"), patient("P2", birth_date="bad"), ["P3", "Zyxwvut"]]
    result = parse_patients(csv_bytes(PATIENTS_HEADER, rows))
    dumped = repr(result.good.to_pylist()) + repr(result.rejected.to_pylist())
    for secret in ("Zyxwvut", "Qwertyuiop", "Evergreen"):
        assert secret not in dumped
    assert not {"family_name", "given_name", "street_address"} & set(result.good.column_names)


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        (patient(""), "missing_field", "patient_id: required value is missing"),
        (patient("P" * 65), "field_too_long", "patient_id: longer than 64 bytes"),
        (patient("P1", birth_date="1981-02-29"), "invalid_date", "birth_date: not an ISO 8601 date (YYYY-MM-DD)"),
        (patient("P1", birth_date="02/03/1980"), "invalid_date", "birth_date: not an ISO 8601 date (YYYY-MM-DD)"),
        (patient("P1", sex="x" * 17), "field_too_long", "sex: longer than 16 bytes"),
    ],
)
def test_bad_rows_are_rejected_with_reason_and_value_free_detail(row: dict[str, str], reason: str, detail: str) -> None:
    result = parse_patients(csv_bytes(PATIENTS_HEADER, [patient("OK"), row]))
    assert result.good.column("patient_id").to_pylist() == ["OK"]
    assert result.rejected.select(["line_number", "reason", "detail"]).to_pylist() == [
        {"line_number": 3, "reason": reason, "detail": detail}
    ]


def test_malformed_row_and_in_file_duplicates() -> None:
    data = csv_bytes(PATIENTS_HEADER, [patient("P1"), ["P9", "x"], patient("P1", postal_code="10001")])
    result = parse_patients(data)
    assert result.good.to_pylist()[0]["postal_code"] == "100"
    assert result.duplicates == 1
    assert result.rejected.select(["line_number", "reason"]).to_pylist() == [
        {"line_number": 3, "reason": "malformed_row"}
    ]
    assert result.rows_in == 3


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("patient_id,family_name\nP1,Müller\n".encode("latin-1"), "not_utf8"),
        (b"patient_id,birth_date\nP1,1980-01-01\n", "bad_header"),
        (b"\x89PNG\r\n\x1a\n", "not_utf8"),
        (b"", "unreadable"),
    ],
)
def test_unreadable_files_are_rejected_whole(data: bytes, reason: str) -> None:
    result = parse_patients(data)
    assert result.file_rejected
    assert result.good.num_rows == 0
    assert result.rejected.column("reason").to_pylist() == [reason]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("02139", "021"),
        ("02139-4307", "021"),
        ("021394307", "021"),
        ("941", "941"),
        ("03601", "000"),  # restricted three-digit areas (HIPAA Safe Harbor)
        ("05901", "000"),
        ("89301-1234", "000"),
        ("000", "000"),
        ("SW1A 1AA", None),  # other countries' codes are dropped
        ("K1A 0B1", None),
        ("1234", None),
        ("é" * 9, None),
        ("", None),
    ],
)
def test_postal_codes_follow_safe_harbor(given: str, stored: str | None) -> None:
    result = parse_patients(csv_bytes(PATIENTS_HEADER, [patient("P1", postal_code=given)]))
    assert result.rejected.num_rows == 0  # dropped, never a rejection
    assert result.good.column("postal_code").to_pylist() == [stored]


def test_every_restricted_area_is_000() -> None:
    from workers.formats.values import SAFE_HARBOR_RESTRICTED_ZIP3

    rows = [patient(f"P{z}", postal_code=f"{z}99") for z in SAFE_HARBOR_RESTRICTED_ZIP3]
    result = parse_patients(csv_bytes(PATIENTS_HEADER, rows))
    assert set(result.good.column("postal_code").to_pylist()) == {"000"}
    assert len(SAFE_HARBOR_RESTRICTED_ZIP3) == 17


def test_patient_id_length_at_and_past_64_bytes_and_block_by_block() -> None:
    from workers.formats.patients import parse_patients_stream

    at, past = "P" * 64, "P" * 65
    data = csv_bytes(PATIENTS_HEADER, [patient(at), patient(past), patient("P2"), patient("P2", sex="male")])
    result = parse_patients(data)
    assert result.good.column("patient_id").to_pylist() == [at, "P2"]
    assert result.duplicates == 1
    assert [(r["line_number"], r["record_id"], r["detail"]) for r in result.rejected.to_pylist()] == [
        (3, None, "patient_id: longer than 64 bytes")
    ]
    parts = list(parse_patients_stream([data], block_size=len(data) // 2))
    assert len(parts) > 1
    assert parts[0].good.schema == result.good.schema
    # Duplicates are resolved within a block only: the two P2 rows fall in different blocks here.
    assert [p for part in parts for p in part.good.column("patient_id").to_pylist()] == [at, "P2", "P2"]


def test_a_stream_of_an_unreadable_file_is_rejected_whole_with_the_patients_schema() -> None:
    from workers.formats.common import with_source_line
    from workers.formats.patients import parse_patients_stream

    parts = list(parse_patients_stream([b"patient_id,birth_date\nP1,1980-01-01\n"]))
    assert [(p.file_rejected, p.rejected.column("reason").to_pylist()) for p in parts] == [(True, ["bad_header"])]
    assert parts[0].good.schema == with_source_line(PATIENTS)
