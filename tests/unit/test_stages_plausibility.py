"""Plausibility: inclusive catalogue ranges in the canonical unit; NaN and unknown metrics implausible."""

from __future__ import annotations

import pytest

from schemas.catalogue import METRICS
from tests.helpers.vitals import R, readings_table
from workers.stages.check_plausibility import check_plausibility


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_bounds_are_inclusive(metric: str) -> None:
    m = METRICS[metric]
    values = [m.plausible_min, m.plausible_max, m.plausible_min - 0.001, m.plausible_max + 0.001]
    result = check_plausibility(readings_table([R("d", metric, i, v) for i, v in enumerate(values)]))
    assert result.kept.column("value").to_pylist() == values[:2]
    assert result.rejected.column("value").to_pylist() == values[2:]
    assert set(result.rejected.column("reason").to_pylist()) == {"implausible"}
    assert m.canonical_unit in result.rejected.column("detail")[0].as_py()


def test_nan_infinite_and_unknown_metric_are_implausible() -> None:
    t = readings_table([R("d", "glucose", 0, float("nan")), R("d", "glucose", 1, float("inf")),
                        R("d", "mood", 2, 5), R("d", "glucose", 3, 100)])  # fmt: skip
    result = check_plausibility(t)
    assert result.kept.column("value").to_pylist() == [100.0]
    assert result.rejected.column("detail").to_pylist()[-1] == "unknown metric"


def test_custom_bounds() -> None:
    t = readings_table([R("d", "heart_rate", 0, 250)])
    assert check_plausibility(t, ({"heart_rate": 30}, {"heart_rate": 220})).kept.num_rows == 0


def test_custom_bounds_name_their_range_and_need_both_ends() -> None:
    t = readings_table([R("d", "x_metric", 0, 11), R("d", "x_metric", 1, 5), R("d", "only_low", 2, 5)])
    result = check_plausibility(t, ({"x_metric": 0, "only_low": 0}, {"x_metric": 10}))
    assert result.kept.column("value").to_pylist() == [5.0]
    assert result.rejected.column("detail").to_pylist() == ["value outside plausible range [0, 10]", "unknown metric"]


def test_no_bounds_make_every_metric_unknown() -> None:
    result = check_plausibility(readings_table([R("d", "heart_rate", 0, 70)]), ({}, {}))
    assert result.kept.num_rows == 0
    assert result.rejected.column("detail").to_pylist() == ["unknown metric"]
