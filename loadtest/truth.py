"""Ground truth: from the journal of what was sent and what the gateway answered, what must be in the warehouse.

Pure (imports only ``schemas``). A :class:`Sent` is one request as the client finally saw it: the readings,
their intents (:mod:`loadtest.fleet`), the status, the reject codes. :func:`expect` turns the journal into
the expected rows of ``fact_vitals`` (key → canonical value), of ``vitals_quarantine`` (key → reason), the
number of duplicates the worker must remove, the reject codes the gateway must have answered, and the
deterioration alerts of CONTRACT §9.

A request without a definitive answer (the connection broke and every retry failed) may or may not have
reached the stream: its series (device, metric) are *uncertain* and kept out of the strict comparison.

Alerts depend on batch boundaries (an hour's risk seen at one commit may drop at the next), so the truth
gives two sets: ``alerts_required`` (each patient-hour whose final risk is medium or high needs an alert of
that risk, or a high one) and ``alerts_possible`` (the risks the hour passed through at request boundaries;
a raised alert outside it is unexpected).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from schemas.catalogue import resolve_metric

Key = tuple[str, str, datetime]  # device_id, metric name, measured_at
HourKey = tuple[str, datetime]  # patient_id, hour_start
MIN_CONTEXT = 3  # preceding readings the spike detector needs before it can call a reading a spike
NEWS2_PARAMS = {"resp_rate": "rr", "spo2": "spo2", "bp_systolic": "sbp", "heart_rate": "pulse", "body_temp": "temp"}
RISK_ORDER = {"low": 0, "low-medium": 1, "medium": 2, "high": 3}


@dataclass
class Sent:
    """One request, as the client finally saw it (after its retries)."""

    device_id: str
    patient_id: str
    readings: list[dict[str, Any]]
    intents: list[str]
    status: int | None  # None: no definitive answer
    rejected: list[tuple[int, str]] = field(default_factory=list)
    sent_at: float = 0.0  # epoch seconds of the first attempt
    done_at: float = 0.0  # epoch seconds of the definitive answer
    attempts: int = 1
    late: bool = False
    malformed_body: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sent:
        data = dict(data)
        data["rejected"] = [(int(i), str(c)) for i, c in data.get("rejected", [])]
        return cls(**data)

    def accepted_indices(self) -> list[int]:
        if self.status not in (202, 422):
            return []
        refused = {index for index, _ in self.rejected}
        return [i for i in range(len(self.readings)) if i not in refused]


@dataclass
class Truth:
    fact: dict[Key, float] = field(default_factory=dict)
    quarantine: dict[Key, str] = field(default_factory=dict)
    uncertain: set[Key] = field(default_factory=set)
    uncertain_series: set[tuple[str, str]] = field(default_factory=set)
    requests: int = 0
    requests_indeterminate: int = 0
    attempts: int = 0  # HTTP requests made, retries included
    readings_sent: int = 0
    readings_accepted: int = 0
    duplicates: int = 0
    duplicates_max: int = 0  # plus readings resent after an attempt without an answer (they may have landed)
    status_counts: Counter[int] = field(default_factory=Counter)
    rejects_expected: Counter[str] = field(default_factory=Counter)
    rejects_answered: Counter[str] = field(default_factory=Counter)
    reject_mismatches: int = 0
    alerts_required: dict[HourKey, str] = field(default_factory=dict)  # patient-hour → final risk
    alerts_possible: dict[HourKey, set[str]] = field(default_factory=dict)
    alert_reached_at: dict[tuple[str, datetime, str], float] = field(default_factory=dict)  # first sent_at
    measured_sent: dict[Key, tuple[float, bool]] = field(default_factory=dict)  # key → (sent_at, late)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def canonical(reading: dict[str, Any]) -> tuple[str, float]:
    metric = resolve_metric(reading["metric"])
    if metric is None:
        raise ValueError("accepted reading with an unknown metric")
    return metric.name, metric.to_canonical(float(reading["value"]), reading.get("unit"))


def expect(journal: Iterable[Sent]) -> Truth:
    """The expected warehouse contents of everything in ``journal`` (in the order requests were answered)."""
    truth = Truth()
    first: dict[Key, tuple[float, str, int]] = {}  # key → (canonical value, intent, order)
    order = 0
    entries = sorted(journal, key=lambda s: (s.done_at, s.sent_at))
    accepted_log: list[tuple[Sent, list[Key]]] = []
    for sent in entries:
        truth.requests += 1
        truth.readings_sent += len(sent.readings)
        truth.attempts += sent.attempts
        if sent.status is None:
            truth.requests_indeterminate += 1
        else:
            truth.status_counts[sent.status] += 1
        expected_codes = {i: intent.split(":", 1)[1] for i, intent in enumerate(sent.intents) if ":" in intent}
        truth.rejects_expected.update(expected_codes.values())
        if sent.status in (202, 422):
            answered = dict(sent.rejected)
            truth.rejects_answered.update(answered.values())
            truth.reject_mismatches += sum(1 for i in set(answered) | set(expected_codes)
                                           if answered.get(i) != expected_codes.get(i))  # fmt: skip
        keys: list[Key] = []
        accepted = set(sent.accepted_indices())
        for index, reading in enumerate(sent.readings):
            if index in expected_codes:
                continue
            name, value = canonical(reading)
            key = (reading["device_id"], name, parse_ts(reading["measured_at"]))
            if sent.status is None:
                truth.uncertain.add(key)
                truth.uncertain_series.add(key[:2])
                continue
            if index not in accepted:
                continue
            truth.readings_accepted += 1
            keys.append(key)
            truth.measured_sent.setdefault(key, (sent.sent_at, sent.late))
            if key in first:
                truth.duplicates += 1
                continue
            first[key] = (value, sent.intents[index], order)
            order += 1
        if sent.attempts > 1 and sent.status in (202, 422):
            truth.duplicates_max += (sent.attempts - 1) * len(accepted)
        accepted_log.append((sent, keys))
    truth.duplicates_max += truth.duplicates
    _classify(truth, first)
    _alerts(truth, accepted_log)
    return truth


def _classify(truth: Truth, first: dict[Key, tuple[float, str, int]]) -> None:
    series: dict[tuple[str, str], list[tuple[datetime, float, str]]] = defaultdict(list)
    for (device, metric, at), (value, intent, _) in first.items():
        series[(device, metric)].append((at, value, intent))
    for (device, metric), readings in series.items():
        readings.sort()
        described = resolve_metric(metric)
        assert described is not None
        kept: list[tuple[datetime, float, str]] = []
        for at, value, intent in readings:
            if not described.is_plausible(value):
                truth.quarantine[(device, metric, at)] = "implausible"
            else:
                kept.append((at, value, intent))
        floor = described.spike_floor
        for index, (at, value, intent) in enumerate(kept):
            key = (device, metric, at)
            if intent == "spike" and index >= MIN_CONTEXT and index + 1 < len(kept):
                before, after = kept[index - 1][1], kept[index + 1][1]
                # "Far" is beyond the metric's minimum deviation from both neighbours, on the same side.
                far = min(abs(value - before), abs(value - after)) > floor
                same_side = (value - before) * (value - after) > 0
                if far and same_side:
                    truth.quarantine[key] = "spike"
                    continue
            truth.fact[key] = value
    for key in list(truth.fact) + list(truth.quarantine):
        if key[:2] in truth.uncertain_series:
            truth.uncertain.add(key)


def _alerts(truth: Truth, accepted_log: list[tuple[Sent, list[Key]]]) -> None:
    """Replay each patient's fact readings request by request; note the risk of each touched hour."""
    state: dict[HourKey, dict[str, tuple[datetime, float]]] = defaultdict(dict)
    risks: dict[HourKey, str] = {}
    uncertain_patients = {s.patient_id for s, _ in accepted_log if s.status is None}
    for sent, keys in accepted_log:
        touched: set[HourKey] = set()
        for key in keys:
            _device, metric, at = key
            if metric not in NEWS2_PARAMS or key not in truth.fact:
                continue
            hour = (sent.patient_id, at.replace(minute=0, second=0, microsecond=0))
            current = state[hour].get(metric)
            if current is None or current[0] < at:
                state[hour][metric] = (at, truth.fact[key])
            touched.add(hour)
        for hour in touched:
            risk, _total = news2({m: v for m, (_, v) in state[hour].items()})
            risks[hour] = risk
            truth.alerts_possible.setdefault(hour, set()).add(risk)
            truth.alert_reached_at.setdefault((*hour, risk), sent.sent_at)
    for hour, risk in risks.items():
        if hour[0] in uncertain_patients:
            continue
        if RISK_ORDER[risk] >= RISK_ORDER["medium"]:
            truth.alerts_required[hour] = risk


def _round(value: float, places: int) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def news2_scores(values: dict[str, float]) -> dict[str, int]:
    """The NEWS2 score of each present parameter (CONTRACT §9: SpO2 scale 1, air, alert)."""
    scores: dict[str, int] = {}
    if "resp_rate" in values:
        rr = _round(values["resp_rate"], 0)
        scores["rr"] = 3 if rr <= 8 else 1 if rr <= 11 else 0 if rr <= 20 else 2 if rr <= 24 else 3
    if "spo2" in values:
        spo2 = _round(values["spo2"], 0)
        scores["spo2"] = 3 if spo2 <= 91 else 2 if spo2 <= 93 else 1 if spo2 <= 95 else 0
    if "bp_systolic" in values:
        sbp = _round(values["bp_systolic"], 0)
        scores["sbp"] = 3 if sbp <= 90 else 2 if sbp <= 100 else 1 if sbp <= 110 else 0 if sbp <= 219 else 3
    if "heart_rate" in values:
        hr = _round(values["heart_rate"], 0)
        scores["pulse"] = (
            3 if hr <= 40 else 1 if hr <= 50 else 0 if hr <= 90 else 1 if hr <= 110 else 2 if hr <= 130 else 3
        )
    if "body_temp" in values:
        t = _round(values["body_temp"], 1)
        scores["temp"] = (
            3
            if t <= Decimal("35.0")
            else 1
            if t <= Decimal("36.0")
            else 0
            if t <= Decimal("38.0")
            else 1
            if t <= Decimal("39.0")
            else 2
        )
    return scores  # fmt: skip


def news2(values: dict[str, float]) -> tuple[str, int]:
    """(risk, total) of one patient-hour's latest values."""
    scores = news2_scores(values)
    total = sum(scores.values())
    if total >= 7:
        return "high", total
    if total >= 5:
        return "medium", total
    if any(score == 3 for score in scores.values()):
        return "low-medium", total
    return "low", total
