"""with_reason: the rejected-rows shape every stage returns (reason not null, detail nullable)."""

from __future__ import annotations

import pyarrow as pa

from tests.helpers.vitals import R, readings_table
from workers.stages.result import with_reason

REASON = pa.field("reason", pa.string(), nullable=False)
DETAIL = pa.field("detail", pa.string(), nullable=True)


def test_with_reason_appends_reason_and_one_detail_for_all_rows() -> None:
    t = readings_table([R("d", "heart_rate", 0, 70), R("d", "heart_rate", 1, 71)])
    out = with_reason(t, "implausible", "above range")
    assert out.schema == pa.schema([*t.schema, REASON, DETAIL])
    assert out.schema.field("reason").nullable is False
    assert out.schema.field("detail").nullable is True
    assert out.column("reason").to_pylist() == ["implausible", "implausible"]
    assert out.column("detail").to_pylist() == ["above range", "above range"]
    assert out.select(t.column_names).to_pylist() == t.to_pylist()


def test_with_reason_without_detail_gives_null_strings() -> None:
    t = readings_table([R("d", "heart_rate", 0, 70)])
    out = with_reason(t, "duplicate", None)
    assert out.schema == pa.schema([*t.schema, REASON, DETAIL])
    assert out.column("detail").to_pylist() == [None]
    empty = with_reason(t.slice(0, 0), "spike", None)
    assert empty.schema == out.schema
    assert empty.num_rows == 0


def test_with_reason_takes_a_detail_per_row() -> None:
    t = readings_table([R("d", "heart_rate", 0, 70), R("d", "heart_rate", 1, 71)])
    out = with_reason(t, "spike", pa.array(["a", None], pa.string()))
    assert out.column("detail").to_pylist() == ["a", None]
    chunked = with_reason(t, "spike", pa.chunked_array([["x"], ["y"]], pa.string()))
    assert chunked.column("detail").to_pylist() == ["x", "y"]
    assert chunked.schema == pa.schema([*t.schema, REASON, DETAIL])
