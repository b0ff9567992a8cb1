"""Values passed between the file handler and the warehouse loaders.

Contract: a :class:`LoadPlan` is everything one batch (one S3 object) writes to the warehouse; a loader applies
it in ONE transaction, idempotently per ``batch_id`` (an already-audited batch is skipped and its audited
counts returned).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from workers.runtime.types import BatchResult

__all__ = ["BatchLoader", "FileLoad", "LoadPlan", "LoadSession", "check_chunk", "load_plan"]


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


class LoadSession(Protocol):
    """One batch's warehouse load, fed chunk by chunk; nothing is visible before :meth:`commit`.

    Order of calls: (``start_file`` -> ``add``* -> ``end_file``)+ -> ``commit``. Leaving the session's context
    without ``commit`` abandons everything it staged. ``audited`` is set on entry when the batch was already
    committed (then the caller skips the rest and returns it).
    """

    audited: BatchResult | None

    async def start_file(self, source_key: str, valid_from: datetime) -> None:
        """Begin a file: its earlier ``batch_quarantine`` rows are replaced by the ones :meth:`add` gives."""
        ...

    async def add(self, tables: Mapping[str, pa.Table], quarantine: pa.Table, duplicates: int = 0) -> None:
        """Stage one chunk: good rows per lake table (``schemas.arrow`` schema + ``source_line``, the row's
        line in the file: the last line of a natural key wins across chunks), ``BATCH_QUARANTINE`` rows and
        the number of rows the chunk's parser already superseded."""
        ...

    async def end_file(self) -> None:
        """Merge what the file staged (one row per natural key: the one with the highest ``source_line``)."""
        ...

    async def commit(self) -> BatchResult:
        """Write the ``load_audit`` row and commit; returns the audited counts. Durable on return."""
        ...


class BatchLoader(Protocol):
    """A warehouse the batch pipelines load into."""

    async def audited(self, batch_id: str) -> BatchResult | None:
        """The audited counts of ``batch_id``, or None if it was never committed."""
        ...

    def session(self, batch_id: str, pipeline: str) -> AbstractAsyncContextManager[LoadSession]:
        """A :class:`LoadSession` for ``batch_id`` (one transaction)."""
        ...

    async def load(self, plan: LoadPlan) -> BatchResult:
        """Apply ``plan`` in one transaction with its ``load_audit`` row (each file one chunk); skip (and
        return the audited counts) if the batch is already audited. Durable on return."""
        ...

    async def close(self) -> None: ...


CLAIM_STATUSES = ("paid", "denied", "pending")


async def load_plan(loader: BatchLoader, plan: LoadPlan) -> BatchResult:
    """Apply a whole :class:`LoadPlan` through ``loader.session`` (every file one chunk)."""
    check_plan(plan)
    async with loader.session(plan.batch_id, plan.pipeline) as session:
        if session.audited is not None:
            return session.audited
        for file in plan.files:
            await session.start_file(file.source_key, file.valid_from)
            await session.add(file.tables, file.quarantine, file.rows_duplicate)
            await session.end_file()
        return await session.commit()


def check_chunk(tables: Mapping[str, pa.Table]) -> None:
    """:func:`check_plan` for one chunk's tables."""
    check_plan(LoadPlan("", "", (FileLoad("", datetime.min, pa.table({}), tables),)))


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
