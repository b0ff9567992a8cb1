"""Values passed between the file handler and the warehouse loaders.

Contract: a :class:`LoadPlan` is everything one batch (one S3 object) writes to the warehouse; a loader applies
it in ONE transaction, idempotently per ``batch_id`` (an already-audited batch is skipped and its audited
counts returned).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from workers.runtime.types import BatchResult

__all__ = ["BatchLoader", "FileLoad", "LoadPlan"]


@dataclass(frozen=True, slots=True)
class FileLoad:
    """What one source file writes.

    - ``tables``: lake table name (``patients``, ``encounters``, ``claims``) -> good rows in the matching
      ``schemas.arrow`` schema (extra columns such as ``source_line`` are ignored).
    - ``quarantine``: ``schemas.arrow.BATCH_QUARANTINE`` rows; they REPLACE every earlier row of
      (pipeline, ``source_key``), so a re-delivered file never doubles its quarantine.
    - ``valid_from``: start of the ``dim_patient`` versions this file creates (the object's event time).
    """

    source_key: str
    valid_from: datetime
    quarantine: pa.Table
    tables: Mapping[str, pa.Table] = field(default_factory=dict)
    rows_duplicate: int = 0

    @property
    def rows_loaded(self) -> int:
        return sum(int(t.num_rows) for t in self.tables.values())

    @property
    def rows_quarantined(self) -> int:
        return int(self.quarantine.num_rows)


@dataclass(frozen=True, slots=True)
class LoadPlan:
    batch_id: str
    pipeline: str
    files: tuple[FileLoad, ...]

    def result(self) -> BatchResult:
        loaded = sum(f.rows_loaded for f in self.files)
        quarantined = sum(f.rows_quarantined for f in self.files)
        duplicate = sum(f.rows_duplicate for f in self.files)
        return BatchResult(
            rows_in=loaded + quarantined + duplicate,
            rows_loaded=loaded,
            rows_quarantined=quarantined,
            rows_duplicate=duplicate,
        )


class BatchLoader(Protocol):
    """A warehouse the batch pipelines load into."""

    async def audited(self, batch_id: str) -> BatchResult | None:
        """The audited counts of ``batch_id``, or None if it was never committed."""
        ...

    async def load(self, plan: LoadPlan) -> BatchResult:
        """Apply ``plan`` in one transaction with its ``load_audit`` row; skip (and return the audited
        counts) if the batch is already audited. Durable on return."""
        ...

    async def close(self) -> None: ...


CLAIM_STATUSES = ("paid", "denied", "pending")


def check_plan(plan: LoadPlan) -> None:
    """Warehouse-side guards the DDL cannot express everywhere (Redshift has no CHECK constraints).

    Raises :class:`common.errors.TerminalError` (naming the column, never a value) when a claims row has a
    status outside ``paid``/``denied``/``pending``.
    """
    import pyarrow.compute as pc

    from common.errors import TerminalError

    for file in plan.files:
        claims = file.tables.get("claims")
        if claims is None or claims.num_rows == 0:
            continue
        allowed = pc.is_in(claims.column("status"), value_set=pa.array(CLAIM_STATUSES))
        if not pc.all(pc.fill_null(allowed, False)).as_py():
            raise TerminalError("fact_claims.status: value outside paid, denied, pending")
