"""A reference NEWS2 (CONTRACT §9) written independently of ``workers.stages.score_news2``: Decimal rounding of
``repr(value)`` and the chart as if-chains, one value at a time. Tests compare the pipeline against it."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

__all__ = ["BOUNDARY_VALUES", "reference_risk", "reference_score", "reference_scores"]


def _rounded(value: float, decimals: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def reference_score(parameter: str, value: float) -> int:
    """The chart's score of one value (rounded half up as a decimal first)."""
    if parameter == "temp":
        t = _rounded(value, 1)
        if t <= Decimal("35.0"):
            return 3
        if t <= Decimal("36.0"):
            return 1
        if t <= Decimal("38.0"):
            return 0
        if t <= Decimal("39.0"):
            return 1
        return 2
    v = _rounded(value, 0)
    if parameter == "rr":
        return 3 if v <= 8 else 1 if v <= 11 else 0 if v <= 20 else 2 if v <= 24 else 3
    if parameter == "spo2":
        return 3 if v <= 91 else 2 if v <= 93 else 1 if v <= 95 else 0
    if parameter == "sbp":
        return 3 if v <= 90 else 2 if v <= 100 else 1 if v <= 110 else 0 if v <= 219 else 3
    if parameter == "pulse":
        return 3 if v <= 40 else 1 if v <= 50 else 0 if v <= 90 else 1 if v <= 110 else 2 if v <= 130 else 3
    raise ValueError(parameter)


def reference_risk(scores: dict[str, int]) -> str:
    total = sum(scores.values())
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if any(s == 3 for s in scores.values()):
        return "low-medium"
    return "low"


def reference_scores(values: dict[str, float | None]) -> dict[str, object]:
    """``{"score_<p>": …, "total", "parameters", "any_three", "risk"}`` for one patient-hour's values."""
    scores = {p: reference_score(p, v) for p, v in values.items() if v is not None}
    out: dict[str, object] = {f"score_{p}": scores.get(p) for p in ("rr", "spo2", "sbp", "pulse", "temp")}
    out.update(
        total=sum(scores.values()),
        parameters=len(scores),
        any_three=any(s == 3 for s in scores.values()),
        risk=reference_risk(scores),
    )
    return out


# Both sides of every threshold of every parameter: the last value of a band and the first of the next, as
# whole (rounded) values and as the half-step spellings that round to either side.
BOUNDARY_VALUES: dict[str, tuple[float, ...]] = {
    "rr": (8, 8.49, 8.5, 9, 11, 11.4999, 11.5, 12, 20, 20.5, 21, 24, 24.49, 24.5, 25),
    "spo2": (91, 91.49, 91.5, 92, 93, 93.5, 94, 95, 95.4, 95.5, 96, 100),
    "sbp": (90, 90.4, 90.5, 91, 100, 100.5, 101, 110, 110.5, 111, 219, 219.49, 219.5, 220),
    "pulse": (40, 40.5, 41, 50, 50.49, 50.5, 51, 90, 90.5, 91, 110, 110.5, 111, 130, 130.5, 131),
    "temp": (35.0, 35.04, 35.05, 35.1, 36.0, 36.05, 36.1, 38.0, 38.04, 38.05, 38.1, 39.0, 39.05, 39.1),
}
