"""A realistic simulated device fleet (pure: no I/O).

Each device random-walks its patient's physiology around a personal baseline (mean-reverting),
sends snapshots of several metrics, and now and then misbehaves as real devices do: an isolated
spike (motion artefact), an implausible value (sensor fault), a sustained change (real physiology),
other units or LOINC codes, and retries that repeat a body already sent (duplicates). A few patients
deteriorate (``Device.deteriorating``): over minutes their respiration and pulse rise while SpO2 and blood
pressure fall, so their NEWS2 climbs through medium to high (CONTRACT §9) and the pipeline raises alerts.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# metric: (baseline mean, baseline spread across patients, step sd, reversion, lo, hi, decimals)
PHYSIOLOGY: dict[str, tuple[float, float, float, float, float, float, int]] = {
    "heart_rate": (75, 10, 1.5, 0.08, 35, 190, 0),
    "spo2": (97, 1.5, 0.3, 0.15, 82, 100, 0),
    "resp_rate": (15, 2, 0.5, 0.1, 6, 40, 0),
    "body_temp": (36.9, 0.3, 0.03, 0.05, 34.5, 41, 1),
    "bp_systolic": (122, 12, 2.0, 0.08, 80, 210, 0),
    "bp_diastolic": (78, 8, 1.5, 0.08, 45, 130, 0),
    "glucose": (105, 15, 3.0, 0.05, 50, 400, 0),
}
SPIKE_SIZE = {
    "heart_rate": 70,
    "spo2": 20,
    "resp_rate": 25,
    "body_temp": 4,
    "bp_systolic": 80,
    "bp_diastolic": 50,
    "glucose": 250,
}
IMPLAUSIBLE = {
    "heart_rate": 420,
    "spo2": 140,
    "resp_rate": 95,
    "body_temp": 55,
    "bp_systolic": 420,
    "bp_diastolic": 260,
    "glucose": 2500,
}
LOINC = {
    "heart_rate": "8867-4",
    "spo2": "59408-5",
    "resp_rate": "9279-1",
    "body_temp": "8310-5",
    "bp_systolic": "8480-6",
    "bp_diastolic": "8462-4",
    "glucose": "2339-0",
}


# metric: (change of the baseline per snapshot while deteriorating, the level it stops at)
DETERIORATION: dict[str, tuple[float, float]] = {
    "resp_rate": (0.08, 30.0),
    "heart_rate": (0.3, 140.0),
    "spo2": (-0.04, 88.0),
    "bp_systolic": (-0.3, 85.0),
    "body_temp": (0.004, 39.4),
}
DETERIORATING_EVERY = 10
"""One device in this many (at least one in any fleet of two or more) has a deteriorating patient."""


@dataclass
class FleetMix:
    """Probabilities of each kind of misbehaviour per reading or request."""

    spike: float = 0.004
    implausible: float = 0.001
    sustained_change: float = 0.0005
    alt_unit: float = 0.05
    loinc_code: float = 0.05
    retry_duplicate: float = 0.02


@dataclass
class Device:
    device_id: str
    patient_id: str
    rng: random.Random
    mix: FleetMix = field(default_factory=FleetMix)
    tick: int = 0
    deteriorating: bool = False
    baseline: dict[str, float] = field(default_factory=dict)
    level: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for metric, (mean, spread, *_rest) in PHYSIOLOGY.items():
            self.baseline[metric] = self.rng.gauss(mean, spread)
            self.level[metric] = self.baseline[metric]

    def metrics_due(self) -> list[str]:
        """Every snapshot: heart rate, SpO2, respiratory rate; BP every 5th, temperature every 10th,
        glucose every 20th."""
        due = ["heart_rate", "spo2", "resp_rate"]
        if self.tick % 5 == 0:
            due += ["bp_systolic", "bp_diastolic"]
        if self.tick % 10 == 0:
            due.append("body_temp")
        if self.tick % 20 == 0:
            due.append("glucose")
        return due

    def snapshot(self, now: datetime) -> list[dict[str, Any]]:
        """The readings of one snapshot taken at ``now``."""
        readings = [self._reading(metric, now) for metric in self.metrics_due()]
        self.tick += 1
        return readings

    def _reading(self, metric: str, now: datetime) -> dict[str, Any]:
        _mean, _spread, step, reversion, lo, hi, decimals = PHYSIOLOGY[metric]
        rng = self.rng
        if rng.random() < self.mix.sustained_change:
            self.baseline[metric] += rng.choice((-1, 1)) * SPIKE_SIZE[metric] * 0.6
        if self.deteriorating and metric in DETERIORATION:
            self._deteriorate(metric)
        target = self.baseline[metric]
        self.level[metric] += reversion * (target - self.level[metric]) + rng.gauss(0, step)
        self.level[metric] = min(hi, max(lo, self.level[metric]))
        value = self.level[metric]
        roll = rng.random()
        if roll < self.mix.implausible:
            value = IMPLAUSIBLE[metric]
        elif roll < self.mix.implausible + self.mix.spike:
            value = value + rng.choice((-1, 1)) * SPIKE_SIZE[metric]
            value = max(value, 2.0)
        reading: dict[str, Any] = {
            "device_id": self.device_id,
            "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "metric": metric,
            "value": round(value, decimals) if decimals else float(round(value)),
            "measured_at": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if rng.random() < self.mix.loinc_code:
            reading["metric"] = LOINC[metric]
        if rng.random() < self.mix.alt_unit:
            reading.update(_alternative_unit(metric, reading["value"]))
        return reading

    def _deteriorate(self, metric: str) -> None:
        """Move the baseline of ``metric`` one step towards its deteriorated level (per reading of the metric,
        scaled by how often the metric is due: the same change per snapshot for every metric)."""
        per_snapshot, limit = DETERIORATION[metric]
        every = {"bp_systolic": 5, "body_temp": 10}.get(metric, 1)
        moved = self.baseline[metric] + per_snapshot * every
        self.baseline[metric] = min(moved, limit) if per_snapshot > 0 else max(moved, limit)
        self.level[metric] = self.baseline[metric] + (self.level[metric] - self.baseline[metric]) * 0.5


def _alternative_unit(metric: str, value: float) -> dict[str, Any]:
    if metric == "body_temp":
        return {"value": round(value * 9 / 5 + 32, 2), "unit": "[degF]"}
    if metric in ("bp_systolic", "bp_diastolic"):
        return {"value": round(value / 7.50062, 3), "unit": "kPa"}
    if metric == "glucose":
        return {"value": round(value / 18.016, 3), "unit": "mmol/L"}
    if metric == "heart_rate":
        return {"unit": "bpm"}
    if metric == "resp_rate":
        return {"unit": "{breaths}/min"}
    return {"unit": "%"}


def make_fleet(size: int, seed: int | None = None, prefix: str = "sim") -> list[Device]:
    """``size`` devices, each with its own patient and a reproducible random stream; one in
    :data:`DETERIORATING_EVERY` (at least one when ``size >= 2``) has a deteriorating patient."""
    master = random.Random(seed)
    return [
        Device(
            device_id=f"{prefix}-{index:05d}",
            patient_id=f"{prefix}-pt-{index:05d}",
            rng=random.Random(master.getrandbits(64)),
            deteriorating=size >= 2 and index % DETERIORATING_EVERY == 1,
        )
        for index in range(size)
    ]
