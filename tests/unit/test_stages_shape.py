"""Reshaping between stage outputs and sink tables: exact columns, types, constants, grouping and row order."""

from __future__ import annotations

import pyarrow as pa

from schemas.arrow import KEYS, PENDING, PROCESSED_VITALS, QUARANTINED_VITALS, SERIES, VITAL_COLUMNS
from tests.helpers.vitals import SECOND, T0_US, R, readings_table, series, values_of
from workers.stages.shape import drop_keys, series_table, to_pending, to_processed, to_quarantined

MINUTE = 60 * SECOND


def _rejected(rows: list[R], reason: str, details: list[str | None]) -> pa.Table:
    t = readings_table(rows)
    return t.append_column("reason", pa.array([reason] * len(rows), pa.string())).append_column(
        "detail", pa.array(details, pa.string())
    )


def test_to_processed_keeps_the_vital_columns_and_stamps_the_batch() -> None:
    t = readings_table([R("d1", "heart_rate", 0, 70), R("d2", "spo2", 1, 97, patient_id=None)])
    out = to_processed(t, "b-1")
    assert out.schema == PROCESSED_VITALS
    assert out.column("batch_id").to_pylist() == ["b-1", "b-1"]
    assert out.select(list(VITAL_COLUMNS)).to_pylist() == t.select(list(VITAL_COLUMNS)).to_pylist()
    assert to_processed(t.slice(0, 0), "b-1").schema == PROCESSED_VITALS
    assert to_processed(t.slice(0, 0), "b-1").num_rows == 0


def test_to_quarantined_of_nothing_is_an_empty_table_of_the_schema() -> None:
    out = to_quarantined([], "b-1")
    assert out.schema == QUARANTINED_VITALS
    assert out.num_rows == 0


def test_to_quarantined_concatenates_in_order_with_reason_and_detail() -> None:
    implausible = _rejected([R("d", "heart_rate", 0, 900)], "implausible", ["above 300"])
    spikes = _rejected([R("d", "spo2", 1, 60), R("e", "spo2", 2, 61)], "spike", ["isolated spike", None])
    out = to_quarantined([implausible, spikes], "b-9")
    assert out.schema == QUARANTINED_VITALS
    assert values_of(out) == [900.0, 60.0, 61.0]
    assert out.column("reason").to_pylist() == ["implausible", "spike", "spike"]
    assert out.column("detail").to_pylist() == ["above 300", "isolated spike", None]
    assert out.column("batch_id").to_pylist() == ["b-9"] * 3
    assert out.column("device_id").to_pylist() == ["d", "d", "e"]


def test_to_pending_adds_batch_and_source() -> None:
    t = readings_table(series("d", "resp_rate", [16, 17]))
    out = to_pending(t, "b-2", "shard-0001")
    assert out.schema == PENDING
    assert out.column("batch_id").to_pylist() == ["b-2", "b-2"]
    assert out.column("source_id").to_pylist() == ["shard-0001", "shard-0001"]
    assert values_of(out) == [16.0, 17.0]
    assert to_pending(t.slice(0, 0), "b-2", "s").schema == PENDING


def test_series_table_of_nothing_is_empty() -> None:
    out = series_table(readings_table([]), MINUTE)
    assert out.schema == SERIES
    assert out.num_rows == 0


def test_series_table_gives_each_series_its_oldest_reading_minus_the_lookback() -> None:
    rows = [
        R("d1", "heart_rate", 30, 70),
        R("d1", "heart_rate", 10, 71),  # the oldest of d1/heart_rate, not the first received
        R("d1", "spo2", 20, 97),
        R("d2", "heart_rate", 5, 80),
        R("d1", "heart_rate", 50, 72),
    ]
    out = series_table(readings_table(rows), 7 * MINUTE)
    assert out.schema == SERIES
    got = sorted(zip(out.column("device_id").to_pylist(), out.column("metric").to_pylist(),
                     out.column("since").cast(pa.int64()).to_pylist(), strict=True))  # fmt: skip
    lookback = 7 * MINUTE
    assert got == [
        ("d1", "heart_rate", T0_US + 10 * SECOND - lookback),
        ("d1", "spo2", T0_US + 20 * SECOND - lookback),
        ("d2", "heart_rate", T0_US + 5 * SECOND - lookback),
    ]


def test_drop_keys_removes_exactly_the_keyed_rows_and_keeps_order() -> None:
    rows = [
        R("d", "heart_rate", 3, 70),
        R("d", "heart_rate", 1, 71),
        R("d", "spo2", 1, 97),  # same device and time, other metric: kept
        R("e", "heart_rate", 1, 72),  # same metric and time, other device: kept
        R("d", "heart_rate", 2, 73),
        R("d", "heart_rate", 0, 74),
    ]
    t = readings_table(rows)
    keys = readings_table([R("d", "heart_rate", 1, 0), R("d", "heart_rate", 0, 0), R("d", "heart_rate", 1, 0),
                           R("x", "heart_rate", 3, 0)]).select(list(KEYS.names)).cast(KEYS)  # fmt: skip
    out = drop_keys(t, keys)
    assert out.schema == t.schema
    assert values_of(out) == [70.0, 97.0, 72.0, 73.0]
    assert out.column("arrival_seq").to_pylist() == [0, 2, 3, 4]


def test_drop_keys_with_wider_keys_and_many_rows_keeps_order() -> None:
    t = readings_table(series("d", "heart_rate", range(2000)))
    drop = readings_table(series("d", "heart_rate", range(0, 2000, 3), step_s=3))  # a whole READINGS table as keys
    out = drop_keys(t, drop)
    assert values_of(out) == [float(v) for v in range(2000) if v % 3]


def test_drop_keys_with_nothing_to_drop_or_nothing_to_drop_from() -> None:
    t = readings_table(series("d", "heart_rate", [70, 71]))
    empty_keys = KEYS.empty_table()
    assert drop_keys(t, empty_keys) is t
    empty = t.slice(0, 0)
    assert drop_keys(empty, readings_table(series("d", "heart_rate", [1]))) is empty
    none_hit = readings_table([R("z", "heart_rate", 0, 0)])
    assert drop_keys(t, none_hit).to_pylist() == t.to_pylist()
