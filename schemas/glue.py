"""The lake's tables in the Glue Data Catalog (CONTRACT §6, §10), as plain data for boto3 and CloudFormation.

One :class:`LakeTable` per lake table: its S3 prefix, Hive-style partition keys (in path order) and Parquet
columns (from the Arrow schemas, mapped to Hive types). ``table_input`` / ``partition_input`` build the Glue API
structures (Parquet SerDe, ``EXTERNAL_TABLE``, ``classification=parquet``); ``partition_of`` reads a table and
its partition values from an object key (``processed/vitals/dt=2026-01-01/hour=07/x.parquet``). Pure data.

The batch pipelines' processed tables are not partitioned (their objects sit under folders named after the
source files, which Athena and Spectrum read recursively), so only the vitals tables get partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from schemas.arrow import CLAIMS, ENCOUNTERS, PATIENTS, PROCESSED_VITALS, QUARANTINED_VITALS

__all__ = [
    "LAKE_TABLES",
    "PARQUET_INPUT_FORMAT",
    "PARQUET_OUTPUT_FORMAT",
    "PARQUET_SERDE",
    "LakeTable",
    "hive_type",
    "partition_input",
    "partition_of",
    "table_input",
]

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"


def hive_type(dtype: pa.DataType) -> str:
    """The Hive/Glue type of an Arrow type of the lake's Parquet files."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_float64(dtype):
        return "double"
    if pa.types.is_int64(dtype):
        return "bigint"
    if pa.types.is_int32(dtype):
        return "int"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_date32(dtype):
        return "date"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    raise ValueError(f"no Hive type for Arrow type {dtype}")


_LINEAGE = pa.schema(
    [pa.field("source_line", pa.int64()), pa.field("source_key", pa.string()), pa.field("batch_id", pa.string())]
)


@dataclass(frozen=True)
class LakeTable:
    name: str
    prefix: str
    partition_keys: tuple[str, ...]
    schema: pa.Schema
    description: str

    def columns(self) -> list[dict[str, str]]:
        return [{"Name": f.name, "Type": hive_type(f.type)} for f in self.schema if f.name not in self.partition_keys]

    def location(self, bucket: str, values: tuple[str, ...] = ()) -> str:
        parts = "".join(f"{k}={v}/" for k, v in zip(self.partition_keys[: len(values)], values, strict=True))
        return f"s3://{bucket}/{self.prefix}{parts}"


LAKE_TABLES: tuple[LakeTable, ...] = (
    LakeTable(
        "vitals_processed", "processed/vitals/", ("dt", "hour"), PROCESSED_VITALS,
        "Clean readings by UTC day and hour of measured_at (CONTRACT §6)",
    ),
    LakeTable(
        "vitals_quarantine", "quarantine/vitals/", ("reason", "dt"), QUARANTINED_VITALS,
        "Quarantined readings by reason and UTC day of measured_at (CONTRACT §6)",
    ),
    LakeTable(
        "ehr_patients", "processed/ehr/patients/", (), pa.unify_schemas([PATIENTS, _LINEAGE]),
        "Patients as read from the EHR feeds, one object per source file",
    ),
    LakeTable(
        "ehr_encounters", "processed/ehr/encounters/", (), pa.unify_schemas([ENCOUNTERS, _LINEAGE]),
        "Encounters as read from the EHR feeds, one object per source file",
    ),
    LakeTable(
        "claims", "processed/claims/", (), pa.unify_schemas([CLAIMS, _LINEAGE]),
        "Claim lines as read from the claims feeds, one object per source file",
    ),
)  # fmt: skip


def _storage(table: LakeTable, location: str) -> dict[str, Any]:
    return {
        "Columns": table.columns(),
        "Location": location,
        "InputFormat": PARQUET_INPUT_FORMAT,
        "OutputFormat": PARQUET_OUTPUT_FORMAT,
        "Compressed": True,
        "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        "StoredAsSubDirectories": False,
    }


def table_input(table: LakeTable, bucket: str) -> dict[str, Any]:
    """Glue ``TableInput`` of ``table`` in ``bucket``."""
    return {
        "Name": table.name,
        "Description": table.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "parquet.compression": "ZSTD"},
        "PartitionKeys": [{"Name": key, "Type": "string"} for key in table.partition_keys],
        "StorageDescriptor": _storage(table, table.location(bucket)),
    }


def partition_input(table: LakeTable, bucket: str, values: tuple[str, ...]) -> dict[str, Any]:
    """Glue ``PartitionInput`` of ``table`` for partition ``values`` (in ``partition_keys`` order)."""
    return {"Values": list(values), "StorageDescriptor": _storage(table, table.location(bucket, values))}


def partition_of(key: str) -> tuple[LakeTable, tuple[str, ...]] | None:
    """The partitioned lake table an object key belongs to and its partition values; None for any other key."""
    for table in LAKE_TABLES:
        if not table.partition_keys or not key.startswith(table.prefix):
            continue
        segments = key[len(table.prefix) :].split("/")
        if len(segments) <= len(table.partition_keys):
            return None
        values = []
        for name, segment in zip(table.partition_keys, segments, strict=False):  # pragma: no mutate (None=False)
            label, sep, value = segment.partition("=")
            if label != name or not sep or not value:
                return None
            values.append(value)
        return table, tuple(values)
    return None
