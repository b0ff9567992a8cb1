"""NEWS2 on Redshift (Data API): statements added to a vitals batch's ``BatchExecuteStatement``, and the
alert outbox.

:func:`statements` gives the recompute for the batch's clean rows (to run before the audit row is written;
empty when no row can change a score); its last statement SELECTs the alerts it raised (the caller reads it as
sub-statement ``<id>:<position>``). :class:`RedshiftAlertOutbox` reads unpublished
alerts and marks alerts published.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from workers.warehouse import news2_sql
from workers.warehouse.news2_sql import ALERT_ROWS

__all__ = ["RedshiftAlertOutbox", "statements"]

_OLDEST = pa.schema([pa.field("oldest", pa.float64(), nullable=True)])


def statements(batch_id_literal: str, clean: pa.Table) -> list[str]:
    """The recompute of the patient-hours of ``clean`` (bounded by its ``measured_at``), or ``[]``."""
    relevant = news2_sql.news2_rows(clean)
    bounds = news2_sql.hour_bounds(relevant.column("measured_at")) if relevant.num_rows else None
    if bounds is None:
        return []
    return news2_sql.news2_statements(batch_id_literal, bounds[0], bounds[1], "redshift", returning=True)


class RedshiftAlertOutbox:
    """The ``deterioration_alerts`` outbox through the Data API (a ``RedshiftStatements`` runner)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    async def unpublished(self, raised_before_us: int, limit: int = 500) -> pa.Table:
        table: pa.Table = await self.runner.query([news2_sql.unpublished_sql(raised_before_us, limit)], ALERT_ROWS)
        return table

    async def oldest_unpublished(self) -> float | None:
        table = await self.runner.query([news2_sql.oldest_unpublished_sql()], _OLDEST)
        value = table.column("oldest")[0].as_py() if table.num_rows else None
        return None if value is None else float(value)

    async def mark_published(self, alert_ids: list[str]) -> None:
        if alert_ids:
            await self.runner.run([news2_sql.mark_published_sql(alert_ids)])
