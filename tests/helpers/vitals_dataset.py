"""A generated device fleet for end-to-end tests of the vitals pipeline, with its expected outcome.

Phase 1 is the fleet's ordinary traffic: steady series with ordinary variability, one isolated spike and
one sustained change per device, implausible values, every unit alias, LOINC-coded metrics, readings out of
order (within and across requests) and exact duplicates (a retried request). Phase 2 comes minutes later:
late duplicates with new message ids and different values, including copies of quarantined readings.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.catalogue import resolve_metric

Key = tuple[str, str, datetime]  # device_id, metric name, measured_at

NOISE = (0, 1, -1, 2, -2, 0, 1, -1, 0, 2, -1, 1, -2, 0, 1)
TEMP_UNITS = [
    ("Cel", lambda c: c),
    ("°C", lambda c: c),
    ("degC", lambda c: c),
    ("[degF]", lambda c: c * 9 / 5 + 32),
    ("degF", lambda c: c * 9 / 5 + 32),
    ("°F", lambda c: c * 9 / 5 + 32),
]
BP_UNITS = [("mm[Hg]", lambda v: v), ("mmHg", lambda v: v), ("kPa", lambda v: v / 7.50062)]
GLUCOSE_UNITS = [("mg/dL", lambda v: v), ("mmol/L", lambda v: v / 18.016)]
HR_UNITS = ["/min", "bpm", "{beats}/min", None]


@dataclass
class Dataset:
    phase1: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (device_id, body)
    phase2: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    clean: dict[Key, float] = field(default_factory=dict)  # expected fact_vitals values (canonical)
    quarantined: dict[Key, str] = field(default_factory=dict)  # expected reason
    readings_sent: int = 0  # readings in all bodies, duplicates included

    @property
    def distinct(self) -> int:
        return len(self.clean) + len(self.quarantined)


def _ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _canonical(metric: str, value: float, unit: str | None) -> float:
    resolved = resolve_metric(metric)
    assert resolved is not None
    return resolved.to_canonical(value, unit)


def build(devices: int = 6, start: datetime | None = None, seed: int = 11) -> Dataset:
    rng = random.Random(seed)
    start = start or (datetime.now(UTC) - timedelta(hours=1)).replace(second=0, microsecond=0)
    data = Dataset()
    for index in range(devices):
        device = f"e2e-dev-{index:02d}"
        _device(data, device, index, start, rng)
    return data


def _reading(
    device: str, metric: str, value: float, at: datetime, unit: str | None = None, message_id: str | None = None
) -> dict[str, Any]:
    reading: dict[str, Any] = {
        "device_id": device,
        "metric": metric,
        "value": value,
        "measured_at": _ts(at),
        "message_id": message_id or str(uuid.uuid4()),
    }
    if unit is not None:
        reading["unit"] = unit
    return reading


def _device(data: Dataset, device: str, index: int, start: datetime, rng: random.Random) -> None:
    step = timedelta(seconds=10)
    bodies: list[dict[str, Any]] = []

    # Heart rate: 30 readings, ordinary variability, an isolated spike at 12, a sustained change from 20.
    base = 68 + index
    hr: list[dict[str, Any]] = []
    for i in range(30):
        at = start + i * step
        value = float(base + NOISE[i % len(NOISE)])
        if i == 12:
            value = float(base + 70)
        elif i >= 20:
            value = float(base + 40 + NOISE[i % len(NOISE)])
        unit = HR_UNITS[i % len(HR_UNITS)]
        metric = "8867-4" if i % 7 == 3 else "heart_rate"
        hr.append(_reading(device, metric, value, at, unit))
        key = (device, "heart_rate", at)
        if i == 12:
            data.quarantined[key] = "spike"
        else:
            data.clean[key] = value
    for chunk in range(0, 30, 5):  # in order across requests, shuffled within each
        part = hr[chunk : chunk + 5]
        rng.shuffle(part)
        bodies.append({"readings": part})

    # Respiratory rate: no spikes; requests sent newest first (out of order across requests).
    rr = []
    for i in range(12):
        at = start + i * step
        value = float(15 + NOISE[(i + index) % len(NOISE)])
        rr.append(_reading(device, "resp_rate", value, at, "{breaths}/min" if i % 2 else "/min"))
        data.clean[(device, "resp_rate", at)] = value
    bodies += [{"readings": rr[c : c + 4]} for c in range(8, -1, -4)]

    # SpO2 (also by both LOINC codes) with one implausible value.
    spo2 = []
    for i in range(10):
        at = start + i * step
        value = 140.0 if i == 6 else float(97 + (NOISE[i] // 2))
        metric = ("spo2", "59408-5", "2708-6")[i % 3]
        spo2.append(_reading(device, metric, value, at, "%" if i % 2 else None))
        key = (device, "spo2", at)
        if i == 6:
            data.quarantined[key] = "implausible"
        else:
            data.clean[key] = value
    bodies.append({"readings": spo2})

    # Temperature, blood pressure, glucose in every accepted unit.
    other = []
    for i, (unit, convert) in enumerate(TEMP_UNITS):
        at = start + i * step
        celsius = 36.8 + 0.1 * (i % 3)
        value = round(convert(celsius), 4)
        other.append(_reading(device, "body_temp" if i % 2 else "8310-5", value, at, unit))
        data.clean[(device, "body_temp", at)] = _canonical("body_temp", value, unit)
    for i, (unit, convert) in enumerate(BP_UNITS * 2):
        at = start + i * step
        sys_v, dia_v = round(convert(120 + NOISE[i]), 4), round(convert(80 + NOISE[i]), 4)
        other.append(_reading(device, "bp_systolic", sys_v, at, unit))
        other.append(_reading(device, "8462-4", dia_v, at, unit))
        data.clean[(device, "bp_systolic", at)] = _canonical("bp_systolic", sys_v, unit)
        data.clean[(device, "bp_diastolic", at)] = _canonical("bp_diastolic", dia_v, unit)
    for i, (unit, convert) in enumerate(GLUCOSE_UNITS * 2):
        at = start + i * step
        value = round(convert(105 + 2 * NOISE[i]), 4)
        metric = ("glucose", "2339-0", "41653-7", "99504-3")[i]
        other.append(_reading(device, metric, value, at, unit))
        data.clean[(device, "glucose", at)] = _canonical("glucose", value, unit)
    rng.shuffle(other)
    bodies += [{"readings": other[c : c + 7]} for c in range(0, len(other), 7)]

    # Exact duplicates: two requests retried verbatim.
    bodies += [bodies[1], bodies[-1]]
    data.phase1 += [(device, body) for body in bodies]

    # Phase 2, minutes later: late copies with new message ids and other values, incl. quarantined ones.
    late = [
        _reading(device, "heart_rate", float(base + 5), start + 4 * step),
        _reading(device, "heart_rate", float(base + 70), start + 12 * step),  # copy of the spike
        _reading(device, "spo2", 140.0, start + 6 * step),  # copy of the implausible value
        _reading(device, "glucose", 99.0, start),
    ]
    data.phase2.append((device, {"readings": late}))
    data.readings_sent = sum(len(body["readings"]) for _, body in data.phase1 + data.phase2)
