"""What a stage returns (the Arrow schemas stages share are in :mod:`schemas.arrow`).

Contract: ``StageResult.kept`` has the stage's input schema; ``StageResult.rejected`` has the same columns
plus ``reason`` (string, not null) and ``detail`` (string, nullable). Neither table is ever ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = ["StageResult", "with_reason"]


def with_reason(table: pa.Table, reason: str, detail: pa.Array | pa.ChunkedArray | str | None) -> pa.Table:
    """``table`` plus a constant ``reason`` column and a ``detail`` column (array, or one value for all rows)."""
    n = table.num_rows
    if detail is None or isinstance(detail, str):
        detail = pa.repeat(pa.scalar(detail, pa.string()), n)
    out = table.append_column(pa.field("reason", pa.string(), nullable=False), pa.repeat(pa.scalar(reason), n))
    detail_field = pa.field("detail", pa.string(), nullable=True)  # pragma: no mutate (nullable is the default)
    return out.append_column(detail_field, detail)


@dataclass(frozen=True, slots=True)
class StageResult:
    """Rows a stage kept and rows it rejected (with ``reason`` and ``detail``)."""

    kept: pa.Table
    rejected: pa.Table
