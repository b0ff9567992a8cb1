"""The warehouse loader interface of the vitals pipeline.

A loader makes one batch durable in one transaction (staging COPY, MERGE into ``fact_vitals``, quarantine
and pending rows, ``load_audit``) and answers the questions the pipeline asks the warehouse. Every method
is idempotent; an already audited batch is never loaded twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

__all__ = ["NOT_INSERTED", "LoadOutcome", "LoadTables", "WarehouseLoader"]

NOT_INSERTED = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("measured_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""Staged rows the load did not insert (``kind``: ``clean`` or ``quarantine``): duplicates found by MERGE."""


@dataclass(frozen=True, slots=True)
class LoadTables:
    """One batch's rows: ``clean`` (``PROCESSED_VITALS``), ``quarantined`` (``QUARANTINED_VITALS``),
    ``pending`` (``sql.PENDING_VITALS``: readings held by spike detection).

    ``rows_in``: readings decoded from the batch; ``duplicates_dropped``: duplicates the stages removed.
    The ``*_url`` fields name the S3 objects holding the same rows (Redshift COPY sources): the batch's COPY
    manifest of the processed files, the quarantine objects (and their COPY manifest) and the pending object.
    """

    clean: pa.Table
    quarantined: pa.Table
    pending: pa.Table
    rows_in: int
    duplicates_dropped: int
    manifest_url: str | None = None
    quarantine_urls: tuple[str, ...] = ()
    pending_url: str | None = None
    quarantine_manifest_url: str | None = None


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    """The batch's ``load_audit`` counts; ``already_loaded`` if it was audited before this call;
    ``not_inserted``: staged rows whose key the batch did not insert (``NOT_INSERTED``); ``news2_scored``:
    patient-hours whose NEWS2 the load recomputed; ``raised``: alerts it raised (``news2_sql.ALERT_ROWS``)."""

    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    already_loaded: bool
    not_inserted: pa.Table
    news2_scored: int = 0
    raised: pa.Table | None = None


class WarehouseLoader(Protocol):
    async def load(self, batch_id: str, pipeline: str, tables: LoadTables) -> LoadOutcome:
        """Load the batch in one transaction (or do nothing if audited); durable on return."""
        ...

    async def audited(self, batch_id: str) -> LoadOutcome | None:
        """The audit counts of ``batch_id`` if it was loaded (``not_inserted`` empty), else ``None``."""
        ...

    async def context(self, series: pa.Table, source_id: str, per_series: int) -> pa.Table:
        """Recent rows of the ``series`` (``sql.SERIES``) as a ``CONTEXT`` table (see ``sql.context_sql``)."""
        ...

    async def batch_rows(self, batch_id: str) -> tuple[pa.Table, pa.Table]:
        """The rows ``batch_id`` inserted: (``PROCESSED_VITALS`` fact rows, ``QUARANTINED_VITALS`` rows)."""
        ...

    async def pending(self, source_id: str) -> pa.Table:
        """Every held reading of ``source_id`` (``shape.PENDING``: with the holding ``batch_id``)."""
        ...

    async def stale_pending_sources(self, received_before_us: int) -> list[str]:
        """Sources holding a reading received before ``received_before_us`` (UTC epoch µs)."""
        ...

    async def record_failed_batch(self, pipeline: str, source_key: str, reason: str, detail: str) -> None:
        """A ``batch_quarantine`` row for a batch the pipeline gave up on (idempotent)."""
        ...

    async def close(self) -> None: ...
