"""Metric catalogue: CONTRACT §3 as data, lookups and unit conversion."""

from __future__ import annotations

import math

import pytest

from schemas.catalogue import (
    METRICS,
    UnitConversion,
    UnknownUnitError,
    plausible_bounds,
    resolve_metric,
    spike_floors,
)

EXPECTED_LOINC = {
    "heart_rate": ("8867-4",),
    "spo2": ("59408-5", "2708-6"),
    "resp_rate": ("9279-1",),
    "body_temp": ("8310-5",),
    "bp_systolic": ("8480-6",),
    "bp_diastolic": ("8462-4",),
    "glucose": ("2339-0", "41653-7", "99504-3"),
}
EXPECTED_UNITS = {
    "heart_rate": ("/min", {"/min", "bpm", "{beats}/min"}),
    "spo2": ("%", {"%"}),
    "resp_rate": ("/min", {"/min", "{breaths}/min"}),
    "body_temp": ("Cel", {"Cel", "[degF]", "degF", "°F", "°C", "degC"}),
    "bp_systolic": ("mm[Hg]", {"mm[Hg]", "mmHg", "kPa"}),
    "bp_diastolic": ("mm[Hg]", {"mm[Hg]", "mmHg", "kPa"}),
    "glucose": ("mg/dL", {"mg/dL", "mmol/L"}),
}
EXPECTED_RANGES = {
    "heart_rate": (1, 300),
    "spo2": (1, 100),
    "resp_rate": (1, 70),
    "body_temp": (25, 45),
    "bp_systolic": (30, 300),
    "bp_diastolic": (10, 200),
    "glucose": (10, 1000),
}
EXPECTED_SPIKE_FLOORS = {
    "heart_rate": 25.0,
    "spo2": 8.0,
    "resp_rate": 8.0,
    "body_temp": 1.5,
    "bp_systolic": 30.0,
    "bp_diastolic": 20.0,
    "glucose": 60.0,
}


def test_catalogue_lists_exactly_the_contract_metrics_in_order() -> None:
    assert list(METRICS) == list(EXPECTED_LOINC)
    for name, metric in METRICS.items():
        assert metric.name == name


@pytest.mark.parametrize(("name", "codes"), EXPECTED_LOINC.items())
def test_loinc_codes_and_stored_code(name: str, codes: tuple[str, ...]) -> None:
    metric = METRICS[name]
    assert metric.loinc_codes == codes
    assert metric.loinc_code == codes[0]


@pytest.mark.parametrize(("code", "name"), [(code, name) for name, codes in EXPECTED_LOINC.items() for code in codes])
def test_resolve_every_loinc_code(code: str, name: str) -> None:
    metric = resolve_metric(code)
    assert metric is not None
    assert metric.name == name


@pytest.mark.parametrize("name", EXPECTED_LOINC)
def test_resolve_by_name(name: str) -> None:
    assert resolve_metric(name) is METRICS[name]


@pytest.mark.parametrize("key", ["Heart_Rate", "HEART_RATE", "heart rate", "8867", "8867-4 ", "", "pulse"])
def test_resolve_unknown_is_none(key: str) -> None:
    assert resolve_metric(key) is None


@pytest.mark.parametrize(("name", "expected"), EXPECTED_UNITS.items())
def test_accepted_units(name: str, expected: tuple[str, set[str]]) -> None:
    canonical, accepted = expected
    metric = METRICS[name]
    assert metric.canonical_unit == canonical
    assert set(metric.units) == accepted
    assert metric.units[canonical] == UnitConversion(scale=1.0, offset=0.0)


@pytest.mark.parametrize(("name", "bounds"), EXPECTED_RANGES.items())
def test_plausible_range(name: str, bounds: tuple[float, float]) -> None:
    metric = METRICS[name]
    assert (metric.plausible_min, metric.plausible_max) == bounds
    assert metric.is_plausible(bounds[0])
    assert metric.is_plausible(bounds[1])
    assert not metric.is_plausible(bounds[0] - 0.001)
    assert not metric.is_plausible(bounds[1] + 0.001)
    assert not metric.is_plausible(math.nan)


def test_vector_helpers() -> None:
    mins, maxs = plausible_bounds()
    assert mins == {name: float(lo) for name, (lo, _) in EXPECTED_RANGES.items()}
    assert maxs == {name: float(hi) for name, (_, hi) in EXPECTED_RANGES.items()}
    assert spike_floors() == EXPECTED_SPIKE_FLOORS
    assert {m.name: m.spike_floor for m in METRICS.values()} == EXPECTED_SPIKE_FLOORS
    # Returned dicts are copies: mutating them does not change the catalogue.
    mins["heart_rate"] = 999.0
    assert plausible_bounds()[0]["heart_rate"] == 1.0


@pytest.mark.parametrize(
    ("name", "value", "unit", "expected"),
    [
        ("body_temp", 98.6, "[degF]", 37.0),
        ("body_temp", 98.6, "degF", 37.0),
        ("body_temp", 98.6, "°F", 37.0),
        ("body_temp", 32.0, "[degF]", 0.0),
        ("body_temp", 212.0, "°F", 100.0),
        ("body_temp", 37.2, "°C", 37.2),
        ("body_temp", 37.2, "degC", 37.2),
        ("body_temp", 37.2, "Cel", 37.2),
        ("bp_systolic", 16.0, "kPa", 120.00992),
        ("bp_diastolic", 10.0, "kPa", 75.0062),
        ("bp_systolic", 120.0, "mmHg", 120.0),
        ("glucose", 5.5, "mmol/L", 99.088),
        ("glucose", 1.0, "mmol/L", 18.016),
        ("glucose", 99.0, "mg/dL", 99.0),
        ("heart_rate", 72.0, "bpm", 72.0),
        ("heart_rate", 72.0, "{beats}/min", 72.0),
        ("resp_rate", 16.0, "{breaths}/min", 16.0),
        ("spo2", 97.0, "%", 97.0),
    ],
)
def test_to_canonical(name: str, value: float, unit: str, expected: float) -> None:
    assert METRICS[name].to_canonical(value, unit) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_identity_conversions_are_exact() -> None:
    value = 0.1 + 0.2
    assert METRICS["heart_rate"].to_canonical(value, "bpm") == value
    assert METRICS["heart_rate"].to_canonical(value, None) == value
    assert isinstance(METRICS["heart_rate"].to_canonical(72, None), float)


def test_fahrenheit_formula() -> None:
    conversion = METRICS["body_temp"].units["[degF]"]
    assert conversion.offset == -32.0
    assert conversion.scale == 5.0 / 9.0
    assert conversion.apply(100.4) == (100.4 - 32.0) * (5.0 / 9.0)


@pytest.mark.parametrize(
    ("name", "unit"),
    [("heart_rate", "beats"), ("body_temp", "F"), ("body_temp", "degf"), ("glucose", "mmol/l"), ("spo2", "")],
)
def test_unknown_unit_raises(name: str, unit: str) -> None:
    with pytest.raises(UnknownUnitError, match="not accepted") as info:
        METRICS[name].to_canonical(1.0, unit)
    assert isinstance(info.value, ValueError)


def test_catalogue_is_read_only() -> None:
    with pytest.raises(TypeError):
        METRICS["x"] = METRICS["spo2"]  # type: ignore[index]
    with pytest.raises(TypeError):
        METRICS["spo2"].units["x"] = UnitConversion()  # type: ignore[index]
    with pytest.raises(AttributeError):
        METRICS["spo2"].plausible_max = 200.0  # type: ignore[misc]


def test_conversions_scale_and_shift_unless_identity() -> None:
    assert UnitConversion(scale=2.0).apply(3.0) == 6.0
    assert UnitConversion(offset=1.0).apply(3.0) == 4.0
    assert UnitConversion(scale=2.0, offset=1.0).apply(3.0) == 8.0
    with pytest.raises(UnknownUnitError) as info:
        METRICS["heart_rate"].to_canonical(1.0, "Hz")
    assert str(info.value) == "unit 'Hz' is not accepted for heart_rate (accepted: /min, bpm, {beats}/min)"
