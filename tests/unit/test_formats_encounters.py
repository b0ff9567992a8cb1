"""parse_encounters: timestamps, discharge >= admit, length of stay, bad rows."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers.batch import ENCOUNTERS_HEADER, csv_bytes, encounter
from workers.formats.encounters import parse_encounters

UTC = dt.UTC


def test_good_rows_with_offsets_fractions_and_open_encounters() -> None:
    rows = [
        encounter("E1"),
        encounter("E2", admit_at="2026-01-01 08:00:00.1234567+05:30", discharge_at="", provider_id=""),
        encounter("E3", admit_at="2026-01-01t08:00:00z", discharge_at="2026-01-01T08:00:00Z"),
    ]
    result = parse_encounters(csv_bytes(ENCOUNTERS_HEADER, rows))
    assert result.rejected.num_rows == 0
    got = {r["encounter_id"]: r for r in result.good.to_pylist()}
    assert got["E1"]["admit_at"] == dt.datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert got["E1"]["discharge_at"] == dt.datetime(2026, 1, 2, 18, tzinfo=UTC)
    assert got["E1"]["length_of_stay_hours"] == 34.0
    assert got["E2"]["admit_at"] == dt.datetime(2026, 1, 1, 2, 30, 0, 123456, tzinfo=UTC)
    assert got["E2"]["length_of_stay_hours"] is None
    assert got["E2"]["provider_id"] is None
    assert got["E3"]["length_of_stay_hours"] == 0.0


@pytest.mark.parametrize(
    ("row", "reason", "column"),
    [
        (encounter(""), "missing_field", "encounter_id"),
        (encounter("E9", patient_id=""), "missing_field", "patient_id"),
        (encounter("E9", admit_at=""), "missing_field", "admit_at"),
        (encounter("E9", admit_at="2026-01-01T08:00:00"), "invalid_timestamp", "admit_at"),  # no offset
        (encounter("E9", admit_at="2026-01-01"), "invalid_timestamp", "admit_at"),
        (encounter("E9", discharge_at="2026-02-30T00:00:00Z"), "invalid_timestamp", "discharge_at"),
        (encounter("E9", discharge_at="2026-01-01T24:00:00Z"), "invalid_timestamp", "discharge_at"),
        (encounter("E9", discharge_at="2025-12-31T23:00:00Z"), "discharge_before_admit", "discharge_at"),
        (encounter("E9", primary_dx="I" * 17), "field_too_long", "primary_dx"),
        (encounter("E9", encounter_type="t" * 65), "field_too_long", "encounter_type"),
    ],
)
def test_bad_rows(row: dict[str, str], reason: str, column: str) -> None:
    result = parse_encounters(csv_bytes(ENCOUNTERS_HEADER, [encounter("E1"), row]))
    assert result.good.column("encounter_id").to_pylist() == ["E1"]
    rejected = result.rejected.to_pylist()
    assert [(r["line_number"], r["reason"]) for r in rejected] == [(3, reason)]
    assert rejected[0]["detail"].startswith(f"{column}: ")
    assert "2025" not in rejected[0]["detail"]
    assert "I" * 17 not in rejected[0]["detail"]


def test_wrong_header_is_a_whole_file_rejection() -> None:
    result = parse_encounters(b"encounter_id,patient_id\nE1,P1\n")
    assert result.file_rejected
    assert result.rejected.column("reason").to_pylist() == ["bad_header"]


def test_identifier_lengths_at_and_past_64_bytes() -> None:
    at, past = "E" * 64, "E" * 65
    rows = [
        encounter(at, patient_id="P" * 64, provider_id="D" * 64, encounter_type="T" * 64, primary_dx="X" * 16),
        encounter(past),
        encounter("E2", patient_id="P" * 65),
        encounter("E3", provider_id="D" * 65),
        encounter("E4", encounter_type="T" * 65),
        encounter("E5", primary_dx="X" * 17),
    ]
    result = parse_encounters(csv_bytes(ENCOUNTERS_HEADER, rows))
    assert result.good.column("encounter_id").to_pylist() == [at]
    assert [(r["line_number"], r["record_id"], r["detail"]) for r in result.rejected.to_pylist()] == [
        (3, None, "encounter_id: longer than 64 bytes"),
        (4, "E2", "patient_id: longer than 64 bytes"),
        (5, "E3", "provider_id: longer than 64 bytes"),
        (6, "E4", "encounter_type: longer than 64 bytes"),
        (7, "E5", "primary_dx: longer than 16 bytes"),
    ]


def test_duplicates_and_malformed_rows_whole_file_and_block_by_block() -> None:
    from workers.formats.encounters import parse_encounters_stream

    rows = [encounter("E1"), encounter("E1", provider_id="DR8"), ["only", "three", "fields"], encounter("E2")]
    data = csv_bytes(ENCOUNTERS_HEADER, rows)
    whole = parse_encounters(data)
    assert whole.duplicates == 1
    assert [(r["line_number"], r["reason"]) for r in whole.rejected.to_pylist()] == [(4, "malformed_row")]
    parts = list(parse_encounters_stream([data], block_size=len(data) // 2))
    assert len(parts) == 2
    assert sum(p.duplicates for p in parts) == 1
    assert [(r["line_number"], r["reason"]) for p in parts for r in p.rejected.to_pylist()] == [(4, "malformed_row")]
    assert [e for p in parts for e in p.good.column("encounter_id").to_pylist()] == ["E1", "E2"]
