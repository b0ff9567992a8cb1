"""NEWS2 stage: every threshold of every parameter from both sides, decimal rounding, latest per hour, risk."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.arrow import NEWS2_PARAMETERS, NEWS2_SCORES, TIMESTAMP
from tests.helpers.news2 import BOUNDARY_VALUES, reference_score, reference_scores
from tests.helpers.vitals import T0_US, R, readings_table
from workers.stages.score_news2 import (
    CHART,
    HOURLY_VALUES,
    band_cuts,
    latest_per_hour,
    score_news2,
    score_values,
)

PARAMS = {p.name: p for p in CHART}
HOUR_S = 3600


def _hourly(rows: list[dict[str, float | None]]) -> pa.Table:
    data = [{"patient_id": f"p{i}", "hour_start": T0_US, **{p: r.get(p) for p in NEWS2_PARAMETERS}} for i, r in
            enumerate(rows)]  # fmt: skip
    return pa.Table.from_pylist(data, schema=HOURLY_VALUES)


def test_chart_is_the_contract_parameters() -> None:
    assert tuple(p.name for p in CHART) == NEWS2_PARAMETERS
    assert [p.metric for p in CHART] == ["resp_rate", "spo2", "bp_systolic", "heart_rate", "body_temp"]
    assert band_cuts(PARAMS["temp"]) == ("35.05", "36.05", "38.05", "39.05")
    assert band_cuts(PARAMS["rr"]) == ("8.5", "11.5", "20.5", "24.5")


# The chart (CONTRACT §9) spelled out: (value, score) on both sides of every threshold.
CHART_CASES: dict[str, list[tuple[float, int]]] = {
    "rr": [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (1, 3), (70, 3)],
    "spo2": [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0), (1, 3)],
    "sbp": [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (300, 3)],
    "pulse": [(40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)],
    "temp": [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (45, 2)],
}


@pytest.mark.parametrize("parameter", NEWS2_PARAMETERS)
def test_both_sides_of_every_threshold(parameter: str) -> None:
    values, expected = zip(*CHART_CASES[parameter], strict=True)
    got = score_values(PARAMS[parameter], np.array(values, dtype=np.float64)).tolist()
    assert got == list(expected)


@pytest.mark.parametrize("parameter", NEWS2_PARAMETERS)
def test_half_steps_round_half_up_like_the_reference(parameter: str) -> None:
    values = BOUNDARY_VALUES[parameter]
    got = score_values(PARAMS[parameter], np.array(values, dtype=np.float64)).tolist()
    assert got == [reference_score(parameter, v) for v in values]


def test_rounding_is_decimal_not_binary() -> None:
    temp, rr = PARAMS["temp"], PARAMS["rr"]
    assert round(38.05, 1) == 38.0  # binary rounding of the double 38.04999…; as a decimal it is 38.1
    assert score_values(temp, np.array([38.05, 38.049999999999997, 38.0499999, 35.05, 35.0499])).tolist() == [
        1, 1, 0, 1, 3,
    ]  # fmt: skip
    assert score_values(temp, np.array([(100.4 - 32) * 5 / 9])).tolist() == [0]  # 38.000000000000004 °C
    assert score_values(rr, np.array([8.5, np.nextafter(8.5, 0), 8.4999999999])).tolist() == [1, 3, 3]


@settings(max_examples=400, deadline=None)
@given(
    parameter=st.sampled_from(NEWS2_PARAMETERS),
    value=st.one_of(
        st.floats(1, 300, allow_nan=False),
        st.decimals("1", "300", places=2).map(float),
        st.integers(10, 3000).map(lambda i: i / 20),  # exact half steps
    ),
)
def test_matches_the_reference_for_any_value(parameter: str, value: float) -> None:
    assert score_values(PARAMS[parameter], np.array([value])).tolist() == [reference_score(parameter, value)]


# A reference table: patient-hours and the scores, totals and risks a clinician reads off the chart.
REFERENCE_TABLE: list[tuple[dict[str, float | None], int, str]] = [
    ({"rr": 16, "spo2": 98, "sbp": 120, "pulse": 70, "temp": 37.0}, 0, "low"),
    ({"rr": 21, "spo2": 95, "sbp": 120, "pulse": 70, "temp": 37.0}, 3, "low"),
    ({"rr": 8, "spo2": 98, "sbp": 120, "pulse": 70, "temp": 37.0}, 3, "low-medium"),
    ({"rr": 8, "spo2": 95, "sbp": 120, "pulse": 70, "temp": 37.0}, 4, "low-medium"),
    ({"rr": 22, "spo2": 94, "sbp": 105, "pulse": 95, "temp": 37.0}, 5, "medium"),
    ({"rr": 25, "spo2": 94, "sbp": 120, "pulse": 95, "temp": 38.05}, 6, "medium"),
    ({"rr": 25, "spo2": 91, "sbp": 120, "pulse": 70, "temp": 37.0}, 6, "medium"),
    ({"rr": 25, "spo2": 91, "sbp": 100, "pulse": 120, "temp": 39.5}, 12, "high"),
    ({"rr": 24, "spo2": 92, "sbp": 101, "pulse": 111, "temp": 36.1}, 7, "high"),
    ({"rr": None, "spo2": 90, "sbp": None, "pulse": None, "temp": None}, 3, "low-medium"),
    ({"rr": None, "spo2": None, "sbp": None, "pulse": 131, "temp": 39.1}, 5, "medium"),
]


def test_reference_table() -> None:
    rows = [values for values, _, _ in REFERENCE_TABLE]
    scored = score_news2(_hourly(rows))
    assert scored.schema == NEWS2_SCORES
    for got, (values, total, risk) in zip(scored.to_pylist(), REFERENCE_TABLE, strict=True):
        assert (got["total"], got["risk"]) == (total, risk), values
        expected = reference_scores(values)
        assert {k: got[k] for k in expected} == expected
        assert [got[p] for p in NEWS2_PARAMETERS] == [values[p] for p in NEWS2_PARAMETERS]


def test_absent_parameters_have_null_scores_and_do_not_count() -> None:
    scored = score_news2(_hourly([{"spo2": 97.0}, {}])).to_pylist()
    assert (scored[0]["score_spo2"], scored[0]["score_rr"]) == (0, None)
    assert (scored[0]["parameters"], scored[0]["total"], scored[0]["risk"]) == (1, 0, "low")
    assert (scored[1]["parameters"], scored[1]["any_three"], scored[1]["risk"]) == (0, False, "low")


def test_latest_per_hour_across_devices_and_out_of_order() -> None:
    rows = [
        R("d1", "heart_rate", 100, 80),
        R("d2", "heart_rate", 3000, 135),  # latest of hour 0, from another device of the patient
        R("d1", "heart_rate", 200, 60),  # out of order: older than d2's
        R("d1", "heart_rate", HOUR_S + 5, 70),  # next hour
        R("d1", "resp_rate", 10, 14),
        R("d1", "glucose", 20, 400),  # not a NEWS2 parameter
        R("d3", "spo2", 30, 88, patient_id=None),  # no patient: not scored
        R("d9", "spo2", 40, 93, patient_id="p-2"),
        R("d8", "spo2", 40, 99, patient_id="p-2"),  # same instant: the greater device_id wins
    ]
    hourly = latest_per_hour(readings_table(rows)).sort_by([("patient_id", "ascending"), ("hour_start", "ascending")])
    got = hourly.to_pylist()
    assert [(r["patient_id"], r["hour_start"].timestamp() - T0_US / 1e6) for r in got] == [
        ("p-1", 0), ("p-1", HOUR_S), ("p-2", 0),
    ]  # fmt: skip
    assert (got[0]["pulse"], got[0]["rr"], got[0]["spo2"]) == (135, 14, None)
    assert (got[1]["pulse"], got[1]["rr"]) == (70, None)
    assert got[2]["spo2"] == 93
    assert hourly.schema == HOURLY_VALUES
    assert hourly.field("hour_start").type == TIMESTAMP


def test_latest_per_hour_of_nothing() -> None:
    assert latest_per_hour(readings_table([R("d", "glucose", 1, 90)])).num_rows == 0
    assert score_news2(HOURLY_VALUES.empty_table()).num_rows == 0


def test_latest_per_hour_of_a_single_reading() -> None:
    got = latest_per_hour(readings_table([R("d1", "heart_rate", 100, 80)])).to_pylist()
    assert [(r["patient_id"], r["pulse"], r["rr"]) for r in got] == [("p-1", 80.0, None)]


def test_a_non_finite_value_is_absent_not_scored() -> None:
    scored = score_news2(_hourly([{"spo2": float("nan"), "pulse": 135.0}])).to_pylist()[0]
    assert (scored["score_spo2"], scored["score_pulse"], scored["parameters"], scored["total"]) == (None, 3, 1, 3)
    assert scored["risk"] == "low-medium"
