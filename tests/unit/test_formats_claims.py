"""parse_claims: numeric(12,2), NPI, status, line numbers, dates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from schemas.arrow import CLAIMS
from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes
from workers.formats.claims import parse_claims


def test_good_rows_are_typed() -> None:
    rows = [claim("C1", 1), claim("C1", 2, status=" PENDING ", paid_amount="", billed_amount="-12.5", provider_npi="")]
    result = parse_claims(csv_bytes(CLAIMS_HEADER, rows))
    assert result.rejected.num_rows == 0
    assert result.good.select([f.name for f in CLAIMS]).schema == CLAIMS
    first, second = result.good.to_pylist()
    assert first["service_date"] == dt.date(2026, 1, 5)
    assert first["allowed_amount"] == Decimal("120.50")
    assert first["line_number"] == 1
    assert second["status"] == "pending"
    assert second["paid_amount"] is None
    assert second["billed_amount"] == Decimal("-12.50")
    assert second["provider_npi"] is None


@pytest.mark.parametrize(
    ("row", "reason", "column"),
    [
        (claim(""), "missing_field", "claim_id"),
        (claim("C9", patient_id=""), "missing_field", "patient_id"),
        (claim("C9", status=""), "missing_field", "status"),
        (claim("C9", status="approved"), "invalid_status", "status"),
        (claim("C9", line_number="0"), "invalid_number", "line_number"),
        (claim("C9", line_number="1.5"), "invalid_number", "line_number"),
        (claim("C9", line_number="9999999999"), "invalid_number", "line_number"),
        (claim("C9", provider_npi="123456789"), "invalid_npi", "provider_npi"),
        (claim("C9", provider_npi="12345678901"), "invalid_npi", "provider_npi"),
        (claim("C9", provider_npi="12345A7890"), "invalid_npi", "provider_npi"),
        (claim("C9", service_date="2026-1-5"), "invalid_date", "service_date"),
        (claim("C9", billed_amount="1.234"), "invalid_amount", "billed_amount"),
        (claim("C9", allowed_amount="12345678901.00"), "invalid_amount", "allowed_amount"),
        (claim("C9", paid_amount="1e3"), "invalid_amount", "paid_amount"),
        (claim("C9", paid_amount="$10"), "invalid_amount", "paid_amount"),
        (claim("C9", procedure_code="P" * 17), "invalid_procedure_code", "procedure_code"),
        (claim("C9", procedure_code="9921"), "invalid_procedure_code", "procedure_code"),
        (claim("C9", procedure_code="W1234"), "invalid_procedure_code", "procedure_code"),
        (claim("C9", dx_code="D" * 17), "invalid_dx_code", "dx_code"),
        (claim("C9", dx_code="I1"), "invalid_dx_code", "dx_code"),
        (claim("C9", dx_code="E11.12345"), "invalid_dx_code", "dx_code"),
        (claim("C9", provider_npi="1234567890"), "invalid_npi", "provider_npi"),
        (claim("C9", denial_reason="d" * 257), "field_too_long", "denial_reason"),
    ],
)
def test_bad_rows(row: dict[str, str], reason: str, column: str) -> None:
    result = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1"), row]))
    assert result.good.column("claim_id").to_pylist() == ["C1"]
    rejected = result.rejected.to_pylist()
    assert [(r["line_number"], r["reason"]) for r in rejected] == [(3, reason)]
    assert rejected[0]["detail"].startswith(f"{column}: ")


def test_several_problems_are_all_named() -> None:
    result = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", provider_npi="1", status="x", paid_amount="1.001")]))
    detail = result.rejected.column("detail").to_pylist()[0]
    assert "provider_npi" in detail
    assert "status" in detail
    assert "paid_amount" in detail


def test_same_line_twice_in_a_file_keeps_the_last() -> None:
    result = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", 1, paid_amount="1"), claim("C1", 1, paid_amount="2")]))
    assert result.duplicates == 1
    assert result.good.column("paid_amount").to_pylist() == [Decimal("2.00")]
    assert result.good.column("source_line").to_pylist() == [3]


def test_not_csv_is_rejected_whole() -> None:
    result = parse_claims(b'{"claim_id": "C1"}\n')
    assert result.file_rejected


@pytest.mark.parametrize("code", ["99213", "0001F", "0042T", "J1100", "A0425", "g0008"])
def test_cpt_and_hcpcs_level_ii_codes_pass(code: str) -> None:
    result = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", procedure_code=code)]))
    assert result.rejected.num_rows == 0
    assert result.good.column("procedure_code").to_pylist() == [code.upper()]


@pytest.mark.parametrize("code", ["I10", "E11.9", "E119", "S72.001A", "U07.1", "z00.00", "O9A.119"])
def test_icd10_cm_codes_pass(code: str) -> None:
    result = parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", dx_code=code)]))
    assert result.rejected.num_rows == 0
    assert result.good.column("dx_code").to_pylist() == [code.upper()]


@pytest.mark.parametrize("npi", ["1234567893", "9999974493", "1245319599"])
def test_npis_with_a_valid_check_digit_pass(npi: str) -> None:
    assert parse_claims(csv_bytes(CLAIMS_HEADER, [claim("C1", provider_npi=npi)])).rejected.num_rows == 0


def test_each_failure_of_a_row_is_its_own_reason_with_the_line() -> None:
    rows = [claim("C1"), claim("C2", provider_npi="1234567890"), claim("C3"), claim("C4", dx_code="999")]
    rejected = parse_claims(csv_bytes(CLAIMS_HEADER, rows)).rejected.to_pylist()
    assert [(r["line_number"], r["reason"], r["record_id"]) for r in rejected] == [
        (3, "invalid_npi", "C2:1"),
        (5, "invalid_dx_code", "C4:1"),
    ]


def test_money_is_exact() -> None:
    rows = [claim("C1", billed_amount="0.10", allowed_amount="0.20", paid_amount="9999999999.99")]
    good = parse_claims(csv_bytes(CLAIMS_HEADER, rows)).good
    from decimal import Decimal

    assert good.column("billed_amount").to_pylist() == [Decimal("0.10")]
    assert good.column("paid_amount").to_pylist() == [Decimal("9999999999.99")]


@pytest.mark.parametrize("column", ["claim_id", "patient_id"])
def test_ids_are_at_most_64_bytes(column: str) -> None:
    fits, over = "é" * 32, "é" * 32 + "x"  # 64 and 65 UTF-8 bytes (32 and 33 characters)
    rows = [claim("C1") | {column: fits}, claim("C2", 2) | {column: over}]
    result = parse_claims(csv_bytes(CLAIMS_HEADER, rows))
    assert result.good.column(column).to_pylist() == [fits]
    assert result.rejected.select(["line_number", "reason", "detail"]).to_pylist() == [
        {"line_number": 3, "reason": "field_too_long", "detail": f"{column}: longer than 64 bytes"}
    ]


def test_code_details_name_the_coding_system() -> None:
    rows = [claim("C1", procedure_code="W1234"), claim("C2", dx_code="I1")]
    assert parse_claims(csv_bytes(CLAIMS_HEADER, rows)).rejected.column("detail").to_pylist() == [
        "procedure_code: not a CPT or HCPCS Level II code",
        "dx_code: not an ICD-10-CM code",
    ]


def test_record_id_of_a_rejected_row_is_cut_to_64_and_10_characters() -> None:
    long_id = "C" * 64 + "XYZ"
    rows = [claim(long_id), claim("C2", line_number="123456789012")]
    rejected = parse_claims(csv_bytes(CLAIMS_HEADER, rows)).rejected
    assert rejected.column("reason").to_pylist() == ["field_too_long", "invalid_number"]
    assert rejected.column("record_id").to_pylist() == ["C" * 64 + ":1", "C2:1234567890"]


def test_a_stream_of_an_unreadable_file_is_rejected_whole_with_the_claims_schema() -> None:
    from workers.formats.claims import parse_claims_stream
    from workers.formats.common import with_source_line

    parts = list(parse_claims_stream([b"claim_id,status\nC1,paid\n"]))
    assert [(p.file_rejected, p.rejected.column("reason").to_pylist()) for p in parts] == [(True, ["bad_header"])]
    assert parts[0].good.schema == with_source_line(CLAIMS)
