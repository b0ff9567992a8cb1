"""The metric catalogue (CONTRACT §3) as data, with unit conversion and plausibility bounds.

Contract:
- ``METRICS`` is keyed by metric name; ``resolve_metric`` accepts a name (exact, case-sensitive) or any
  listed LOINC code and returns ``None`` for anything else.
- Values are stored in the canonical unit; ``Metric.to_canonical`` converts from any accepted unit string
  (exact match) and raises ``UnknownUnitError`` otherwise; ``unit=None`` means the canonical unit.
- Plausible ranges are inclusive, in the canonical unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "METRICS",
    "Metric",
    "UnitConversion",
    "UnknownUnitError",
    "plausible_bounds",
    "resolve_metric",
    "spike_floors",
]


class UnknownUnitError(ValueError):
    """A unit string that the metric does not accept."""


@dataclass(frozen=True, slots=True)
class UnitConversion:
    """Affine conversion to the canonical unit: ``canonical = (value + offset) * scale``."""

    scale: float = 1.0
    offset: float = 0.0

    def apply(self, value: float) -> float:
        """Return ``value`` converted to the canonical unit (identity conversions return it unchanged)."""
        if self.scale == 1.0 and self.offset == 0.0:
            return float(value)
        return (value + self.offset) * self.scale


IDENTITY = UnitConversion()
_FAHRENHEIT = UnitConversion(scale=5.0 / 9.0, offset=-32.0)
_KPA_TO_MMHG = UnitConversion(scale=7.50062)
_MMOL_TO_MGDL = UnitConversion(scale=18.016)


@dataclass(frozen=True, slots=True)
class Metric:
    """One catalogue entry. ``loinc_codes[0]`` is the code stored; ``units`` includes the canonical unit."""

    name: str
    loinc_codes: tuple[str, ...]
    canonical_unit: str
    units: Mapping[str, UnitConversion]
    plausible_min: float
    plausible_max: float
    spike_floor: float

    @property
    def loinc_code(self) -> str:
        """The LOINC code stored in the warehouse (the first listed)."""
        return self.loinc_codes[0]

    def to_canonical(self, value: float, unit: str | None) -> float:
        """Convert ``value`` given in ``unit`` (None = canonical) to the canonical unit.

        Raises ``UnknownUnitError`` if the unit string is not accepted for this metric.
        """
        if unit is None:
            return float(value)
        conversion = self.units.get(unit)
        if conversion is None:
            accepted = ", ".join(self.units)
            raise UnknownUnitError(f"unit {unit!r} is not accepted for {self.name} (accepted: {accepted})")
        return conversion.apply(value)

    def is_plausible(self, canonical_value: float) -> bool:
        """True if the canonical value is finite and within the inclusive plausible range."""
        return math.isfinite(canonical_value) and self.plausible_min <= canonical_value <= self.plausible_max


def _metric(
    name: str,
    loinc_codes: tuple[str, ...],
    canonical_unit: str,
    units: dict[str, UnitConversion],
    plausible: tuple[float, float],
    spike_floor: float,
) -> Metric:
    # pragma: no mutate block (runs at import, before mutmut turns a mutant on; test_schemas_catalogue checks values)
    all_units = {canonical_unit: IDENTITY, **units}
    return Metric(
        name=name,
        loinc_codes=loinc_codes,
        canonical_unit=canonical_unit,
        units=MappingProxyType(all_units),
        plausible_min=float(plausible[0]),
        plausible_max=float(plausible[1]),
        spike_floor=float(spike_floor),
    )


_MMHG_UNITS = {"mmHg": IDENTITY, "kPa": _KPA_TO_MMHG}

_ALL: tuple[Metric, ...] = (
    _metric("heart_rate", ("8867-4",), "/min", {"bpm": IDENTITY, "{beats}/min": IDENTITY}, (1, 300), 25),
    _metric("spo2", ("59408-5", "2708-6"), "%", {}, (1, 100), 8),
    _metric("resp_rate", ("9279-1",), "/min", {"{breaths}/min": IDENTITY}, (1, 70), 8),
    _metric(
        "body_temp",
        ("8310-5",),
        "Cel",
        {
            "[degF]": _FAHRENHEIT,
            "degF": _FAHRENHEIT,
            "°F": _FAHRENHEIT,
            "°C": IDENTITY,
            "degC": IDENTITY,
        },
        (25, 45),
        1.5,
    ),
    _metric("bp_systolic", ("8480-6",), "mm[Hg]", dict(_MMHG_UNITS), (30, 300), 30),
    _metric("bp_diastolic", ("8462-4",), "mm[Hg]", dict(_MMHG_UNITS), (10, 200), 20),
    _metric("glucose", ("2339-0", "41653-7", "99504-3"), "mg/dL", {"mmol/L": _MMOL_TO_MGDL}, (10, 1000), 60),
)

METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in _ALL})
"""Every metric of the catalogue, keyed by name, in CONTRACT §3 order."""

_BY_KEY: Mapping[str, Metric] = MappingProxyType(
    {**{code: m for m in _ALL for code in m.loinc_codes}, **{m.name: m for m in _ALL}}
)


def resolve_metric(name_or_loinc: str) -> Metric | None:
    """Return the metric named ``name_or_loinc`` or listing it as a LOINC code; ``None`` if unknown."""
    return _BY_KEY.get(name_or_loinc)


def plausible_bounds() -> tuple[dict[str, float], dict[str, float]]:
    """Return ``(minimums, maximums)`` keyed by metric name (inclusive, canonical unit), for columnar checks."""
    return (
        {m.name: m.plausible_min for m in _ALL},
        {m.name: m.plausible_max for m in _ALL},
    )


def spike_floors() -> dict[str, float]:
    """Return the per-metric minimum deviation (canonical unit) below which a reading is never a spike."""
    return {m.name: m.spike_floor for m in _ALL}
