"""The NEWS2 chart (Royal College of Physicians, 2017; CONTRACT §9) as data, shared by the scoring stage and
the warehouse SQL that scores in the batch transaction.

Contract: per parameter, its metric, the decimals it is rounded to (half up, as a decimal number) and its
bands ``(upper bound of the rounded value, inclusive, as a decimal string, score)`` in ascending order, the last
band unbounded. :func:`band_cuts` gives the cuts between bands: each upper bound plus half a rounding step
(``8.5``, ``38.05``); a value scores the band whose cuts bracket it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["CHART", "HOUR_US", "RISKS", "Parameter", "band_cuts"]

HOUR_US = 3_600_000_000
RISKS: tuple[str, ...] = ("low", "low-medium", "medium", "high")
"""Risk bands in increasing order."""


@dataclass(frozen=True, slots=True)
class Parameter:
    """One chart row: ``bands`` are ``(upper bound of the rounded value, inclusive, as a decimal string, score)``;
    the last band has no upper bound (``None``)."""

    name: str
    metric: str
    decimals: int
    bands: tuple[tuple[str | None, int], ...]


CHART: tuple[Parameter, ...] = (
    Parameter("rr", "resp_rate", 0, (("8", 3), ("11", 1), ("20", 0), ("24", 2), (None, 3))),
    Parameter("spo2", "spo2", 0, (("91", 3), ("93", 2), ("95", 1), (None, 0))),
    Parameter("sbp", "bp_systolic", 0, (("90", 3), ("100", 2), ("110", 1), ("219", 0), (None, 3))),
    Parameter("pulse", "heart_rate", 0, (("40", 3), ("50", 1), ("90", 0), ("110", 1), ("130", 2), (None, 3))),
    Parameter("temp", "body_temp", 1, (("35.0", 3), ("36.0", 1), ("38.0", 0), ("39.0", 1), (None, 2))),
)


def band_cuts(parameter: Parameter) -> tuple[str, ...]:
    """The decimal cuts between bands: each band's inclusive upper bound plus half a rounding step."""
    half = Decimal(5).scaleb(-(parameter.decimals + 1))
    return tuple(str(Decimal(upper) + half) for upper, _ in parameter.bands if upper is not None)
