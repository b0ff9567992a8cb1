"""decode and dedupe stages: columnar decode, bad records rejected whole, first received wins."""

from __future__ import annotations

import pyarrow as pa
import pytest

from schemas.arrow import READINGS
from tests.helpers.vitals import R, envelope, readings_table, us
from workers.stages.decode import RejectedRecord, decode
from workers.stages.dedupe import KeyWindow, dedupe
from workers.stages.result import with_reason


def test_decode_builds_one_readings_table_in_arrival_order() -> None:
    e1 = envelope("d1", [R("d1", "heart_rate", 0, 70), R("d1", "spo2", 0, 97)], received_s=1)
    e2 = envelope("d2", [R("d2", "glucose", 0, 100)], received_s=2)
    result = decode([e1, e2], ["s1", "s2"])
    t = result.readings
    assert t.schema == READINGS
    assert not result.rejected
    assert t.column("device_id").to_pylist() == ["d1", "d1", "d2"]
    assert t.column("arrival_seq").to_pylist() == [0, 1, 2]
    assert t.column("source_seq").to_pylist() == ["s1", "s1", "s2"]
    assert t.column("received_at").cast(pa.int64()).to_pylist() == [us(1), us(1), us(2)]


def test_decode_rejects_bad_records_whole_and_keeps_the_rest() -> None:
    good = envelope("d1", [R("d1", "heart_rate", 0, 70)])
    wrong_type = good.replace(b'"value":[70.0]', b'"value":["70"]')
    null_metric = good.replace(b'"metric":["heart_rate"]', b'"metric":[null]')
    result = decode([b"not json", wrong_type, good, null_metric])
    assert result.readings.num_rows == 1
    assert [(r.index, r.reason) for r in result.rejected] == [
        (0, "malformed_envelope"), (1, "invalid_envelope"), (3, "invalid_envelope")
    ]  # fmt: skip


def test_decode_of_nothing_is_empty() -> None:
    assert decode([]).readings.num_rows == 0


def test_first_received_wins_within_the_batch() -> None:
    t = readings_table([R("d1", "heart_rate", 0, 70), R("d1", "heart_rate", 1, 71), R("d1", "heart_rate", 0, 99),
                        R("d2", "heart_rate", 0, 50)])  # fmt: skip
    result = dedupe(t)
    assert sorted(result.kept.column("value").to_pylist()) == [50.0, 70.0, 71.0]
    assert result.rejected.column("value").to_pylist() == [99.0]
    assert result.rejected.column("reason").to_pylist() == ["duplicate"]
    assert "same batch" in result.rejected.column("detail")[0].as_py()


def test_arrival_seq_not_row_order_decides() -> None:
    t = readings_table([R("d1", "spo2", 0, 90), R("d1", "spo2", 0, 91)])
    t = t.set_column(t.schema.get_field_index("arrival_seq"), "arrival_seq", pa.array([5, 2], pa.int64()))
    assert dedupe(t).kept.column("value").to_pylist() == [91.0]


def test_late_duplicate_of_a_seen_key_is_rejected() -> None:
    seen = readings_table([R("d1", "heart_rate", 0, 70)]).select(["device_id", "metric", "measured_at"])
    t = readings_table([R("d1", "heart_rate", 0, 75), R("d1", "heart_rate", 1, 72), R("d1", "spo2", 0, 97)])
    result = dedupe(t, seen)
    assert sorted(result.kept.column("value").to_pylist()) == [72.0, 97.0]
    assert "earlier batch" in result.rejected.column("detail")[0].as_py()


def test_same_time_other_metric_or_device_is_not_a_duplicate() -> None:
    t = readings_table([R("d1", "heart_rate", 0, 70), R("d1", "spo2", 0, 97), R("d2", "heart_rate", 0, 70)])
    assert dedupe(t).kept.num_rows == 3


def test_key_window_is_bounded_and_keeps_the_newest() -> None:
    window = KeyWindow(max_keys=3)
    window.add(readings_table([R("d", "spo2", s, 97) for s in range(2)]))
    window.add(readings_table([R("d", "spo2", s, 97) for s in range(2, 4)]))
    assert len(window) == 3
    times = window.keys().column("measured_at").cast(pa.int64()).to_pylist()
    assert times == [us(1), us(2), us(3)]
    window.clear()
    assert len(window) == 0
    assert window.keys().num_rows == 0


def test_dedupe_of_nothing_is_empty_with_the_rejected_schema() -> None:
    t = readings_table([])
    result = dedupe(t)
    assert result.kept.num_rows == 0
    assert result.kept.schema == t.schema
    assert result.rejected.num_rows == 0
    assert result.rejected.schema == with_reason(t, "duplicate", None).schema


def test_duplicates_at_a_later_time_of_a_later_series_are_found() -> None:
    t = readings_table([R("d1", "spo2", 0, 90), R("d2", "spo2", 0, 91), R("d2", "spo2", 1, 92), R("d2", "spo2", 1, 93)])
    result = dedupe(t)
    assert result.kept.column("value").to_pylist() == [90.0, 91.0, 92.0]
    assert result.rejected.column("value").to_pylist() == [93.0]


def test_seen_keys_of_another_arrow_type_are_cast_first() -> None:
    seen = pa.table(
        {
            "device_id": pa.array(["d1"], pa.large_string()),
            "metric": ["heart_rate"],
            "measured_at": pa.array([us(0) // 1000], pa.timestamp("ms", tz="UTC")),
        }
    )
    result = dedupe(readings_table([R("d1", "heart_rate", 0, 75), R("d1", "heart_rate", 1, 72)]), seen)
    assert result.kept.column("value").to_pylist() == [72.0]


def test_key_window_drops_whole_old_parts_and_keeps_exactly_the_newest() -> None:
    window = KeyWindow(max_keys=3)
    window.add(readings_table([R("d", "spo2", 0, 97)]))
    assert len(window) == 1  # a single key is remembered
    window.add(readings_table([R("d", "spo2", 1, 97)]))
    window.add(readings_table([R("d", "spo2", s, 97) for s in range(2, 5)]))  # the two older parts go
    assert len(window) == 3
    assert window.keys().column("measured_at").cast(pa.int64()).to_pylist() == [us(2), us(3), us(4)]
    window.add(readings_table([R("d", "spo2", s, 97) for s in range(5, 10)]))  # more than fits at once
    assert len(window) == 3
    assert window.keys().column("measured_at").cast(pa.int64()).to_pylist() == [us(7), us(8), us(9)]


def test_key_window_of_size_zero_remembers_nothing_and_a_negative_size_is_refused() -> None:
    window = KeyWindow(max_keys=0)
    window.add(readings_table([R("d", "spo2", 0, 97)]))
    assert len(window) == 0
    assert window.keys().num_rows == 0
    with pytest.raises(ValueError, match=r"^max_keys must be >= 0$"):
        KeyWindow(max_keys=-1)


def test_dedupe_of_a_single_reading_keeps_it() -> None:
    result = dedupe(readings_table([R("d1", "spo2", 0, 97)]))
    assert result.kept.column("value").to_pylist() == [97.0]
    assert result.rejected.num_rows == 0


def test_decode_rejection_details_name_the_defect_and_the_slow_path_keeps_positions() -> None:
    good = envelope("d1", [R("d1", "heart_rate", 0, 70), R("d1", "spo2", 0, 97)])
    other = envelope("d2", [R("d2", "glucose", 0, 100)])
    wrong_type = good.replace(b'"value":[70.0,97.0]', b'"value":["70",97.0]')
    null_metric = other.replace(b'"metric":["glucose"]', b'"metric":[null]')
    result = decode([b"not json", good, wrong_type, null_metric, other], ["s0", "s1", "s2", "s3", "s4"])
    not_json = "envelope is not JSON: invalid literal, expected 'null': line 1 column 1 (char 0)"
    assert result.rejected == (
        RejectedRecord(0, "malformed_envelope", not_json),
        RejectedRecord(2, "invalid_envelope", "ArrowInvalid"),
        RejectedRecord(3, "invalid_envelope", "ValueError"),
    )
    t = result.readings
    assert t.schema == READINGS
    assert t.column("device_id").to_pylist() == ["d1", "d1", "d2"]
    assert t.column("source_seq").to_pylist() == ["s1", "s1", "s4"]
    assert t.column("arrival_seq").to_pylist() == [0, 1, 2]


def test_decode_keeps_received_at_to_the_microsecond_over_the_int64_range() -> None:
    late = 2**53 + 1  # not representable as a float64
    record = envelope("d1", [R("d1", "heart_rate", 0, 70)], received_s=0)
    record = record.replace(f'"received_at_us":{us(0)}'.encode(), f'"received_at_us":{late}'.encode())
    t = decode([record]).readings
    assert t.column("received_at").cast(pa.int64()).to_pylist() == [late]
