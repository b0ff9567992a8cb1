"""Lake keys of the batch pipelines are a pure function of the source key."""

from __future__ import annotations

from workers.sinks.files_layout import processed_key, quarantine_key, relative_key


def test_ehr_keys() -> None:
    key = "raw/ehr/patients/2026/01/p 1.csv"
    assert processed_key("ehr", "patients", key) == "processed/ehr/patients/patients/2026/01/p 1.csv.parquet"
    assert quarantine_key("ehr", key) == "quarantine/ehr/patients/2026/01/p 1.csv.parquet"
    fhir = "raw/ehr/fhir/x.ndjson"
    assert processed_key("ehr", "encounters", fhir) == "processed/ehr/encounters/fhir/x.ndjson.parquet"


def test_claims_keys_have_no_table_segment() -> None:
    assert processed_key("claims", "claims", "raw/claims/c.csv") == "processed/claims/c.csv.parquet"
    assert quarantine_key("claims", "raw/claims/c.csv") == "quarantine/claims/c.csv.parquet"


def test_keys_outside_the_landing_prefix_stay_distinct() -> None:
    assert relative_key("claims", "other/c.csv") == "external/other/c.csv"
    assert processed_key("claims", "claims", "raw/claims/") == "processed/claims/external/raw/claims/.parquet"


def test_overlong_keys_fall_back_to_a_hash() -> None:
    long_key = "raw/claims/" + "d/" * 600 + "c.csv"
    a = processed_key("claims", "claims", long_key)
    assert a.startswith("processed/claims/_long/")
    assert len(a) < 200
    assert a == processed_key("claims", "claims", long_key)
    assert a != processed_key("claims", "claims", long_key + "x")
