"""The Glue Data Catalog structures: valid requests of the Glue API model (botocore's), exact values, and the
partition values read back from object keys."""

from __future__ import annotations

from typing import Any

import botocore.session
import pyarrow as pa
import pytest
from botocore.validate import ParamValidator

from schemas import glue

TABLES = {t.name: t for t in glue.LAKE_TABLES}
VITALS = TABLES["vitals_processed"]
QUARANTINE = TABLES["vitals_quarantine"]


def _valid(operation: str, params: dict[str, Any]) -> None:
    """``params`` is a valid request of the Glue operation (unknown keys, missing members, wrong types refused)."""
    model = botocore.session.get_session().get_service_model("glue").operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_table_and_partition_inputs_are_valid_glue_requests_with_these_values() -> None:
    for table in glue.LAKE_TABLES:
        _valid("CreateTable", {"DatabaseName": "vitalstream", "TableInput": glue.table_input(table, "lake")})
    table = glue.table_input(VITALS, "lake")
    assert table["Name"] == "vitals_processed"
    assert table["Description"] == VITALS.description
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["Parameters"] == {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"}
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}, {"Name": "hour", "Type": "string"}]
    storage = table["StorageDescriptor"]
    assert storage["Location"] == "s3://lake/processed/vitals/"
    assert storage["Compressed"] is True
    assert storage["StoredAsSubDirectories"] is False
    assert storage["InputFormat"] == glue.PARQUET_INPUT_FORMAT
    assert storage["OutputFormat"] == glue.PARQUET_OUTPUT_FORMAT
    assert storage["SerdeInfo"] == {
        "SerializationLibrary": glue.PARQUET_SERDE,
        "Parameters": {"serialization.format": "1"},
    }
    assert {"Name": "dt", "Type": "string"} not in storage["Columns"]  # partition keys are not Parquet columns
    assert {"Name": "value", "Type": "double"} in storage["Columns"]

    partition = glue.partition_input(QUARANTINE, "lake", ("implausible", "2026-01-01"))
    _valid(
        "BatchCreatePartition",
        {"DatabaseName": "vitalstream", "TableName": QUARANTINE.name, "PartitionInputList": [partition]},
    )
    assert partition["Values"] == ["implausible", "2026-01-01"]
    assert partition["StorageDescriptor"]["Location"] == "s3://lake/quarantine/vitals/reason=implausible/dt=2026-01-01/"
    assert partition["StorageDescriptor"]["Columns"] == QUARANTINE.columns()


def test_locations_take_at_most_the_partition_keys() -> None:
    assert VITALS.location("b") == "s3://b/processed/vitals/"
    assert VITALS.location("b", ("2026-01-01",)) == "s3://b/processed/vitals/dt=2026-01-01/"
    assert VITALS.location("b", ("2026-01-01", "07")) == "s3://b/processed/vitals/dt=2026-01-01/hour=07/"
    with pytest.raises(ValueError, match="zip"):
        VITALS.location("b", ("2026-01-01", "07", "extra"))


def test_partition_of_reads_hive_segments_of_partitioned_tables_only() -> None:
    assert glue.partition_of("processed/vitals/dt=2026-01-01/hour=07/x.parquet") == (VITALS, ("2026-01-01", "07"))
    assert glue.partition_of("quarantine/vitals/reason=spike/dt=2026-01-02/y.parquet") == (
        QUARANTINE,
        ("spike", "2026-01-02"),
    )
    for key in (
        "processed/vitals/dt=2026-01-01/hour=07",  # no object below the partition
        "processed/vitals/dt=2026-01-01/x.parquet",  # one segment short
        "processed/vitals/hour=07/dt=2026-01-01/x.parquet",  # keys out of order
        "processed/vitals/dt2026-01-01/hour=07/x.parquet",  # no '='
        "processed/vitals/dt=/hour=07/x.parquet",  # empty value
        "processed/vitals/dt=a=b/hour=07/x.parquet",  # the first '=' splits: label dt, value a=b is kept whole
        "processed/ehr/patients/dt=2026-01-01/hour=07/x.parquet",  # an unpartitioned table
        "raw/vitals/dt=2026-01-01/hour=07/x.parquet",
    ):
        found = glue.partition_of(key)
        if key.startswith("processed/vitals/dt=a=b"):
            assert found == (VITALS, ("a=b", "07"))
        else:
            assert found is None, key


def test_hive_types() -> None:
    assert glue.hive_type(pa.bool_()) == "boolean"
    assert glue.hive_type(pa.large_string()) == "string"
    assert glue.hive_type(pa.int32()) == "int"
    assert glue.hive_type(pa.int64()) == "bigint"
    assert glue.hive_type(pa.float64()) == "double"
    assert glue.hive_type(pa.date32()) == "date"
    assert glue.hive_type(pa.timestamp("us", tz="UTC")) == "timestamp"
    assert glue.hive_type(pa.decimal128(12, 2)) == "decimal(12,2)"
    with pytest.raises(ValueError, match=r"^no Hive type for Arrow type list<item: int64>$"):
        glue.hive_type(pa.list_(pa.int64()))
