"""A realistic simulated device fleet (pure: no I/O, imports only ``schemas``).

Each device random-walks its patient's physiology around a personal baseline (mean-reverting) and
sends snapshots of several metrics. Now and then it misbehaves as real devices do: an isolated spike
(motion artefact), an implausible value (sensor fault), a sustained change (a step to a new level that
stays: physiology), other units (°F thermometers, kPa cuffs, mmol/L glucose meters) or LOINC codes,
malformed readings and bodies, an outage after which the buffered snapshots arrive late in one request,
and retries that resend a body already sent (duplicates). Some patients deteriorate (NEWS2, CONTRACT §9).

Every reading carries an *intent* (``normal``, ``spike``, ``implausible``, ``step``, ``malformed:<code>``),
from which :mod:`loadtest.truth` derives what must land where. Anomalies are placed where CONTRACT §4
makes the outcome unambiguous: at least :data:`CALM` ordinary readings of the metric before each one,
and a snapshot holding a spike or a step is sent together with the next snapshot, so that the reading
after it always arrives with it (no reading is left waiting for a successor that may never come).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# metric: (baseline mean, baseline spread across patients, step sd, reversion, lo, hi, decimals)
PHYSIOLOGY: dict[str, tuple[float, float, float, float, float, float, int]] = {
    "heart_rate": (75, 8, 1.5, 0.08, 35, 190, 0),
    "spo2": (97.5, 1.0, 0.3, 0.15, 82, 100, 0),
    "resp_rate": (15, 1.5, 0.5, 0.1, 6, 40, 0),
    "body_temp": (36.9, 0.25, 0.03, 0.05, 34.5, 41, 1),
    "bp_systolic": (125, 8, 2.0, 0.08, 80, 210, 0),
    "bp_diastolic": (78, 6, 1.5, 0.08, 45, 130, 0),
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
# Where a deteriorating patient heads (and how many snapshots it takes): NEWS2 medium to high.
DETERIORATED = {"heart_rate": 128, "spo2": 90, "resp_rate": 26, "body_temp": 39.3, "bp_systolic": 92}
CALM = 9  # ordinary readings of a metric before an anomaly may be placed in it (spike detector context)
MAX_READINGS = 1000  # per request (CONTRACT §2)

# A malformed reading and the reject code the gateway must answer for it (CONTRACT §2).
MALFORMED = ("unknown_metric", "invalid_type", "extra_field", "missing_field", "unknown_unit", "future_timestamp")


@dataclass
class FleetMix:
    """Probabilities of each kind of misbehaviour per reading, snapshot or request."""

    spike: float = 0.004
    implausible: float = 0.001
    sustained_change: float = 0.0005
    alt_unit: float = 0.05
    loinc_code: float = 0.05
    retry_duplicate: float = 0.02
    malformed_reading: float = 0.0  # per request: one extra reading the gateway must reject
    malformed_body: float = 0.0  # per request: a body that is not JSON (400); the snapshot is resent after
    outage: float = 0.0  # per snapshot: the device goes offline and buffers its snapshots
    outage_snapshots: tuple[int, int] = (4, 12)
    deteriorating: float = 0.0  # share of patients who deteriorate during the run
    deterioration_snapshots: int = 40


@dataclass
class Outgoing:
    """One request a device sends: the readings, each reading's intent, and how the body is spelled."""

    readings: list[dict[str, Any]]
    intents: list[str]
    body: bytes | None = None  # set for a deliberately malformed body (not JSON)
    late: bool = False  # carries snapshots buffered during an outage

    def expected_rejects(self) -> dict[int, str]:
        """Index → reject code the gateway must answer."""
        return {i: intent.split(":", 1)[1] for i, intent in enumerate(self.intents) if intent.startswith("malformed:")}


@dataclass
class Device:
    device_id: str
    patient_id: str
    rng: random.Random
    mix: FleetMix = field(default_factory=FleetMix)
    tick: int = 0
    baseline: dict[str, float] = field(default_factory=dict)
    level: dict[str, float] = field(default_factory=dict)
    calm: dict[str, int] = field(default_factory=dict)
    deteriorating: bool = False
    outbox: list[tuple[list[dict[str, Any]], list[str], bool]] = field(default_factory=list)
    offline_for: int = 0
    awaiting: set[str] = field(default_factory=set)  # metrics whose spike or step still needs its successor

    def __post_init__(self) -> None:
        for metric, (mean, spread, *_rest) in PHYSIOLOGY.items():
            self.baseline[metric] = self.rng.gauss(mean, spread)
            self.level[metric] = self.baseline[metric]
            self.calm[metric] = 0
        self.deteriorating = self.rng.random() < self.mix.deteriorating
        if self.deteriorating:  # already unwell when the run starts: halfway to where the patient is heading
            for metric, target in DETERIORATED.items():
                self.baseline[metric] += (target - self.baseline[metric]) / 2
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
        return self.labelled_snapshot(now)[0]

    def labelled_snapshot(self, now: datetime) -> tuple[list[dict[str, Any]], list[str]]:
        """The readings of one snapshot taken at ``now`` and the intent of each."""
        if self.deteriorating:
            self._deteriorate()
        due = self.metrics_due()
        pairs = [self._reading(metric, now) for metric in due]
        for metric, (_, intent) in zip(due, pairs, strict=True):
            if intent in ("spike", "step"):
                self.awaiting.add(metric)
            else:
                self.awaiting.discard(metric)
        self.tick += 1
        return [reading for reading, _ in pairs], [intent for _, intent in pairs]

    def take(self, now: datetime) -> Outgoing | None:
        """Take a snapshot at ``now`` and return the request to send now, if any.

        A snapshot with a spike or a step waits until a later one has the next reading of that metric (blood
        pressure comes every 5th snapshot, temperature every 10th); during an outage snapshots pile up and go
        out together (late) once the device is back.
        """
        readings, intents = self.labelled_snapshot(now)
        self.outbox.append((readings, intents, self.offline_for > 0))
        if self.offline_for > 0:
            self.offline_for -= 1
            return None
        if self.rng.random() < self.mix.outage:
            low, high = self.mix.outage_snapshots
            self.offline_for = self.rng.randint(low, high)
            return None
        if self.awaiting:
            return None
        return self._drain(now)

    def flush(self, now: datetime) -> Outgoing | None:
        """Whatever is still waiting, with the ordinary snapshots (0.1 s apart) that give every spike or step
        its successor."""
        self.offline_for = 0
        saved = (self.mix.spike, self.mix.sustained_change, self.mix.implausible)
        self.mix.spike = self.mix.sustained_change = self.mix.implausible = 0.0
        step = 0
        while self.awaiting and step < 25:
            step += 1
            readings, intents = self.labelled_snapshot(now + timedelta(milliseconds=100 * step))
            self.outbox.append((readings, intents, False))
        self.mix.spike, self.mix.sustained_change, self.mix.implausible = saved
        return self._drain(now) if self.outbox else None

    def _drain(self, now: datetime) -> Outgoing:
        readings = [r for snap, _, _ in self.outbox for r in snap]
        intents = [i for _, labels, _ in self.outbox for i in labels]
        late = any(buffered for _, _, buffered in self.outbox)
        self.outbox.clear()
        if len(readings) > MAX_READINGS - 1:  # an outage longer than any test runs; keep the newest
            readings, intents = readings[-(MAX_READINGS - 1) :], intents[-(MAX_READINGS - 1) :]
        if self.rng.random() < self.mix.malformed_reading:
            code = self.rng.choice(MALFORMED)
            readings.append(self._malformed(code, now))
            intents.append(f"malformed:{code}")
        return Outgoing(readings, intents, late=late)

    def malformed_body(self) -> bytes | None:
        """Now and then a body that is not JSON at all (the gateway answers 400)."""
        if self.rng.random() < self.mix.malformed_body:
            return b'{"readings": [{"device_id": "' + self.device_id.encode() + b'", "metric": '
        return None

    def _malformed(self, code: str, now: datetime) -> dict[str, Any]:
        reading: dict[str, Any] = {
            "device_id": self.device_id,
            "message_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "metric": "heart_rate",
            "value": 80.0,
            "measured_at": _ts(now - timedelta(milliseconds=500)),
        }
        if code == "unknown_metric":
            reading["metric"] = "blood_alcohol"
        elif code == "invalid_type":
            reading["value"] = "eighty"
        elif code == "extra_field":
            reading["firmware"] = "1.2.3"
        elif code == "missing_field":
            del reading["measured_at"]
        elif code == "unknown_unit":
            reading["unit"] = "furlongs/fortnight"
        elif code == "future_timestamp":
            reading["measured_at"] = _ts(now + timedelta(hours=2))
        return reading

    def _deteriorate(self) -> None:
        steps = max(1, self.mix.deterioration_snapshots)
        for metric, target in DETERIORATED.items():
            # The baseline moves a fixed share of the way each snapshot: gradual, never spike-like.
            self.baseline[metric] += (target - self.baseline[metric]) * min(1.0, 3.0 / steps)

    def _reading(self, metric: str, now: datetime) -> tuple[dict[str, Any], str]:
        _mean, _spread, step, reversion, lo, hi, decimals = PHYSIOLOGY[metric]
        rng = self.rng
        intent = "normal"
        anomaly_allowed = self.calm[metric] >= CALM and not self.deteriorating
        roll = rng.random()
        if anomaly_allowed and roll < self.mix.sustained_change:
            self.baseline[metric] += rng.choice((-1, 1)) * SPIKE_SIZE[metric] * 0.6
            self.baseline[metric] = min(hi, max(lo, self.baseline[metric]))
            self.level[metric] = self.baseline[metric]
            intent = "step"
        else:
            target = self.baseline[metric]
            self.level[metric] += reversion * (target - self.level[metric]) + rng.gauss(0, step)
            self.level[metric] = min(hi, max(lo, self.level[metric]))
        value = self.level[metric]
        roll = rng.random()
        if intent == "normal" and anomaly_allowed and roll < self.mix.implausible:
            value = IMPLAUSIBLE[metric]
            intent = "implausible"
        elif intent == "normal" and anomaly_allowed and roll < self.mix.implausible + self.mix.spike:
            # Away from the walk by the full size: downwards only where that stays physiological, so the
            # distance to both neighbours is always far beyond the metric's minimum deviation (CONTRACT §4).
            down = value - SPIKE_SIZE[metric] >= lo and rng.random() < 0.5
            value = value - SPIKE_SIZE[metric] if down else value + SPIKE_SIZE[metric]
            intent = "spike"
        self.calm[metric] = 0 if intent != "normal" else self.calm[metric] + 1
        reading: dict[str, Any] = {
            "device_id": self.device_id,
            "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "metric": metric,
            "value": round(value, decimals) if decimals else float(round(value)),
            "measured_at": _ts(now),
        }
        if rng.random() < self.mix.loinc_code:
            reading["metric"] = LOINC[metric]
        if rng.random() < self.mix.alt_unit:
            reading.update(_alternative_unit(metric, reading["value"]))
        return reading, intent


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def make_fleet(size: int, seed: int | None = None, prefix: str = "sim", mix: FleetMix | None = None) -> list[Device]:
    """``size`` devices, each with its own patient and a reproducible random stream."""
    master = random.Random(seed)
    return [
        Device(
            device_id=f"{prefix}-{index:05d}",
            patient_id=f"{prefix}-pt-{index:05d}",
            rng=random.Random(master.getrandbits(64)),
            mix=FleetMix(**vars(mix)) if mix else FleetMix(),
        )
        for index in range(size)
    ]


DETERIORATING_EVERY = 10
"""In :func:`clinical_fleet`, one device in this many (at least one in a fleet of two or more) has a patient
who deteriorates (NEWS2 medium to high: alerts, CONTRACT §9)."""


def clinical_fleet(size: int, seed: int | None = None, prefix: str = "sim") -> list[Device]:
    """The fleet of ``vitalstream simulate`` (``make run``): the default misbehaviour, and the patients of
    devices 1, 11, 21, … deteriorating, so that a new user sees alerts."""
    master = random.Random(seed)
    return [
        Device(
            device_id=f"{prefix}-{index:05d}",
            patient_id=f"{prefix}-pt-{index:05d}",
            rng=random.Random(master.getrandbits(64)),
            mix=FleetMix(deteriorating=1.0 if index % DETERIORATING_EVERY == 1 else 0.0),
        )
        for index in range(size)
    ]


def campaign_mix() -> FleetMix:
    """The misbehaviour of the load test and chaos fleets: every kind, often enough to be seen in a minute."""
    return FleetMix(
        spike=0.01,
        implausible=0.004,
        sustained_change=0.003,
        alt_unit=0.08,
        loinc_code=0.08,
        retry_duplicate=0.03,
        malformed_reading=0.02,
        malformed_body=0.003,
        outage=0.004,
        deteriorating=0.08,
        deterioration_snapshots=30,
    )
