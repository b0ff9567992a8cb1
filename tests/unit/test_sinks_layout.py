"""Pure parts of the sinks: object keys, partitioning, Parquet and manifest encoding, raw archive bytes."""

from __future__ import annotations

import gzip
import io

import orjson
import pyarrow.parquet as pq
import pytest

from tests.helpers.vitals import R, readings_table, us
from workers.sinks.layout import (
    manifest_key,
    partition_by_hour,
    partition_by_reason_day,
    pending_key,
    processed_key,
    quarantine_key,
    quarantine_manifest_key,
    raw_key,
)
from workers.sinks.manifest_s3 import ManifestEntry, build_manifest, parse_manifest
from workers.sinks.parquet_s3 import encode_parquet
from workers.sinks.raw_archive_s3 import encode_raw
from workers.stages.result import with_reason


def test_keys_follow_the_contract_layout() -> None:
    assert raw_key("iot/vitals", "b1", us(3600 * 7 + 5)) == "raw/iot/vitals/dt=2026-01-01/hour=07/b1.jsonl.gz"
    assert processed_key("b1", "2026-01-01", "07") == "processed/vitals/dt=2026-01-01/hour=07/b1.parquet"
    assert quarantine_key("b1", "spike", "2026-01-01") == "quarantine/vitals/reason=spike/dt=2026-01-01/b1.parquet"
    assert manifest_key("b1") == "manifests/vitals/b1.manifest"
    assert quarantine_manifest_key("b1") == "manifests/vitals-quarantine/b1.manifest"
    assert pending_key("b1") == "staging/vitals/pending/b1.parquet"


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "x" * 129])
def test_batch_ids_cannot_escape_the_partition(bad: str) -> None:
    with pytest.raises(ValueError, match="batch_id"):
        processed_key(bad, "2026-01-01", "00")


def test_partition_by_hour_of_measured_at() -> None:
    t = readings_table([R("d", "spo2", 3600 * 24 + 1, 97), R("d", "spo2", 10, 96), R("d", "spo2", 3599, 95)])
    parts = partition_by_hour(t)
    assert [(day, hour, p.column("value").to_pylist()) for day, hour, p in parts] == [
        ("2026-01-01", "00", [96.0, 95.0]),
        ("2026-01-02", "00", [97.0]),
    ]
    assert partition_by_hour(t.slice(0, 0)) == []


def test_partition_quarantine_by_reason_and_day() -> None:
    t = readings_table([R("d", "spo2", 0, 140), R("d", "spo2", 3600 * 30, 141), R("d", "heart_rate", 5, 150)])
    rows = [with_reason(t.slice(0, 2), "implausible", "x"), with_reason(t.slice(2, 1), "spike", "y")]
    import pyarrow as pa

    parts = partition_by_reason_day(pa.concat_tables(rows))
    assert [(reason, day, p.num_rows) for reason, day, p in parts] == [
        ("implausible", "2026-01-01", 1), ("implausible", "2026-01-02", 1), ("spike", "2026-01-01", 1)
    ]  # fmt: skip


def test_parquet_is_snappy_and_deterministic() -> None:
    t = readings_table([R("d", "spo2", s, 97) for s in range(100)])
    data = encode_parquet(t)
    assert data == encode_parquet(t)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    # Redshift COPY from Parquet documents Snappy (and gzip); zstd pages are not documented for it.
    assert meta.row_group(0).column(0).compression == "SNAPPY"
    assert pq.read_table(io.BytesIO(data)).equals(t)


def test_manifest_format() -> None:
    data = build_manifest([ManifestEntry("s3://b/k2", 20), ManifestEntry("s3://b/k1", 10)])
    assert orjson.loads(data) == {"entries": [
        {"url": "s3://b/k1", "mandatory": True, "meta": {"content_length": 10}},
        {"url": "s3://b/k2", "mandatory": True, "meta": {"content_length": 20}},
    ]}  # fmt: skip
    assert parse_manifest(data) == [ManifestEntry("s3://b/k1", 10), ManifestEntry("s3://b/k2", 20)]


def test_raw_archive_is_deterministic_json_lines() -> None:
    payloads = [b'{"v":1}', b'{"v":1,"x":2}']
    body = encode_raw(payloads)
    assert body == encode_raw(payloads)
    assert gzip.decompress(body).splitlines() == payloads
