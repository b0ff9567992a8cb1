"""Lake object keys of the batch pipelines, derived only from the source object key (pure).

A replay or a re-delivery of the same source object therefore overwrites the same objects. Files are
written in parts, one per parsed chunk (:func:`part_key`)::

    raw/ehr/<rel>     -> processed/ehr/<table>/<rel>/part-00000.parquet … and quarantine/ehr/<rel>/part-…

The whole-object keys below are the earlier layout (one object per file)::

    raw/ehr/<rel>     -> processed/ehr/<table>/<rel>.parquet   and   quarantine/ehr/<rel>.parquet
    raw/claims/<rel>  -> processed/claims/<rel>.parquet         and   quarantine/claims/<rel>.parquet

``<rel>`` is the key below ``raw/<pipeline>/`` (e.g. ``patients/2024/p.csv``, ``fhir/bulk.ndjson``); a key
outside that prefix (backfill from elsewhere) keeps its full path under ``external/``. Derived keys longer than
S3's 1,024-byte limit fall back to ``.../_long/<sha256 of the source key>.parquet``.
"""

from __future__ import annotations

import hashlib

__all__ = ["part_key", "part_prefix", "processed_key", "quarantine_key", "relative_key"]

_MAX_KEY_BYTES = 1024


def relative_key(pipeline: str, source_key: str) -> str:
    prefix = f"raw/{pipeline}/"
    if source_key.startswith(prefix) and len(source_key) > len(prefix):
        return source_key[len(prefix) :]
    return "external/" + source_key.lstrip("/")


def _derive(base: str, pipeline: str, source_key: str) -> str:
    key = f"{base}/{relative_key(pipeline, source_key)}.parquet"
    if len(key.encode()) <= _MAX_KEY_BYTES:
        return key
    return f"{base}/_long/{hashlib.sha256(source_key.encode()).hexdigest()}.parquet"


def processed_key(pipeline: str, table: str, source_key: str) -> str:
    """Parquet of ``table`` 's good rows from ``source_key``; ``claims`` has a single table, so no segment."""
    base = f"processed/{pipeline}" if pipeline == table else f"processed/{pipeline}/{table}"
    return _derive(base, pipeline, source_key)


def quarantine_key(pipeline: str, source_key: str) -> str:
    """Parquet of the rows (or the whole-file record) of ``source_key`` that were quarantined."""
    return _derive(f"quarantine/{pipeline}", pipeline, source_key)


def part_prefix(pipeline: str, table: str | None, source_key: str) -> str:
    """Prefix of the Parquet parts of ``source_key`` in ``table`` (None: the quarantine zone)::

    raw/claims/<rel> -> processed/claims/<rel>/part-      quarantine/claims/<rel>/part-
    """
    if table is None:
        base = f"quarantine/{pipeline}"
    else:
        base = f"processed/{pipeline}" if pipeline == table else f"processed/{pipeline}/{table}"
    prefix = f"{base}/{relative_key(pipeline, source_key)}/part-"
    if len(prefix.encode()) + 20 <= _MAX_KEY_BYTES:
        return prefix
    return f"{base}/_long/{hashlib.sha256(source_key.encode()).hexdigest()}/part-"


def part_key(pipeline: str, table: str | None, source_key: str, index: int) -> str:
    """Part ``index`` (0-based chunk of the file) of ``source_key`` in ``table`` (None: quarantine)."""
    return f"{part_prefix(pipeline, table, source_key)}{index:05d}.parquet"
