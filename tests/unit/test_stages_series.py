"""Series helpers: dictionary codes over several (chunked) columns, (device, metric) series codes, timestamps."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tests.helpers.vitals import SECOND, T0_US, R, readings_table
from workers.stages.series import codes, series_codes, timestamps_us


def test_codes_are_first_appearance_order_across_arrays_and_chunks() -> None:
    chunked = pa.chunked_array([pa.array(["b", "a"]), pa.array(["c", "b"])])
    out = codes([chunked, pa.array(["a", "d"]), pa.chunked_array([], pa.string())])
    assert out.dtype == np.int64
    assert out.tolist() == [0, 1, 2, 0, 1, 3]
    assert codes([pa.array(["x", "x"])]).tolist() == [0, 0]  # one array, one chunk


def test_codes_give_null_its_own_code() -> None:
    assert codes([pa.array(["a", None, "a", None], pa.string())]).tolist() == [0, 1, 0, 1]


def test_codes_of_nothing_are_empty_int64() -> None:
    for columns in ([], [pa.array([], pa.string())], [pa.chunked_array([], pa.string())]):
        out = codes(columns)
        assert out.dtype == np.int64
        assert out.tolist() == []


def test_series_codes_are_equal_exactly_for_equal_device_and_metric() -> None:
    a = readings_table([R("a", "heart_rate", 0, 1), R("b", "spo2", 0, 1), R("a", "spo2", 0, 1)])
    b = readings_table([R("b", "heart_rate", 0, 1), R("a", "spo2", 5, 1), R("c", "resp_rate", 0, 1)])
    out = series_codes([a, b])
    assert out.dtype == np.int64
    pairs = [("a", "heart_rate"), ("b", "spo2"), ("a", "spo2"), ("b", "heart_rate"), ("a", "spo2"), ("c", "resp_rate")]
    for i, p in enumerate(pairs):
        for j, q in enumerate(pairs):
            assert (out[i] == out[j]) == (p == q), (p, q)
    # devices a=0 b=1 c=2, metrics heart_rate=0 spo2=1 resp_rate=2: code = device * 3 + metric
    assert out.tolist() == [0, 4, 1, 3, 1, 8]


def test_series_codes_of_empty_tables_are_empty() -> None:
    assert series_codes([readings_table([])]).tolist() == []


def test_timestamps_us_concatenate_the_named_column() -> None:
    a = readings_table([R("a", "heart_rate", 1, 1, received_s=7)])
    b = readings_table([R("a", "heart_rate", 2, 1, received_s=9), R("a", "heart_rate", 3, 1, received_s=8)])
    measured = timestamps_us([a, b])
    assert measured.dtype == np.int64
    assert measured.tolist() == [T0_US + SECOND, T0_US + 2 * SECOND, T0_US + 3 * SECOND]
    assert timestamps_us([a, b], "received_at").tolist() == [T0_US + 7 * SECOND, T0_US + 9 * SECOND, T0_US + 8 * SECOND]
    assert timestamps_us([]).dtype == np.int64
    assert timestamps_us([]).tolist() == []
