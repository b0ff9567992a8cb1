"""The ground truth of the campaigns: where each sent reading must land, NEWS2 and the alerts (CONTRACT §4, §9)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loadtest.fleet import CALM, FleetMix, campaign_mix, make_fleet
from loadtest.reconcile import Report, compare_alerts
from loadtest.shapes import users_at
from loadtest.truth import Sent, expect, news2, news2_scores
from schemas.catalogue import resolve_metric

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def _reading(device: str, metric: str, value: float, second: int, **extra: Any) -> dict[str, Any]:
    at = (T0 + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
    return {"device_id": device, "metric": metric, "value": value, "measured_at": at, **extra}


def _sent(readings: list[dict[str, Any]], intents: list[str] | None = None, status: int | None = 202,
          rejected: list[tuple[int, str]] | None = None, at: float = 0.0) -> Sent:  # fmt: skip
    return Sent("d1", "p1", readings, intents or ["normal"] * len(readings), status, rejected or [], at, at)


def test_a_spike_with_a_successor_is_quarantined_and_one_without_is_loaded() -> None:
    series = [_reading("d1", "heart_rate", 70 + i % 2, i) for i in range(6)]
    series[4]["value"] = 150.0
    intents = ["normal"] * 6
    intents[4] = "spike"
    truth = expect([_sent(series, intents, at=1.0)])
    key = ("d1", "heart_rate", T0 + timedelta(seconds=4))
    assert truth.quarantine == {key: "spike"}
    assert len(truth.fact) == 5
    last = expect([_sent(series[:5], intents[:5], at=1.0)])  # no successor: held, then released
    assert key in last.fact
    assert not last.quarantine


def test_implausible_values_duplicates_rejects_and_units() -> None:
    readings = [
        _reading("d1", "heart_rate", 420.0, 0),
        _reading("d1", "8310-5", 100.4, 1, unit="[degF]"),
        _reading("d1", "blood_alcohol", 1.0, 2),
    ]
    intents = ["implausible", "normal", "malformed:unknown_metric"]
    first = _sent(readings, intents, rejected=[(2, "unknown_metric")], at=1.0)
    retry = _sent(readings, intents, rejected=[(2, "unknown_metric")], at=2.0)
    truth = expect([first, retry])
    assert truth.quarantine == {("d1", "heart_rate", T0): "implausible"}
    assert truth.fact[("d1", "body_temp", T0 + timedelta(seconds=1))] == pytest.approx(38.0)
    assert truth.duplicates == 2
    assert truth.readings_accepted == 4
    assert truth.rejects_answered == truth.rejects_expected
    assert truth.reject_mismatches == 0
    wrong = expect([_sent(readings, intents, rejected=[(2, "invalid_type")], at=1.0)])
    assert wrong.reject_mismatches == 1


def test_a_request_without_an_answer_makes_its_series_uncertain() -> None:
    answered = _sent([_reading("d1", "spo2", 97.0, 0)], at=1.0)
    lost = _sent([_reading("d1", "spo2", 96.0, 1)], status=None, at=2.0)
    truth = expect([answered, lost])
    assert truth.requests_indeterminate == 1
    assert ("d1", "spo2", T0) in truth.uncertain  # its series is compared loosely


@pytest.mark.parametrize(
    ("values", "scores"),
    [
        ({"resp_rate": 8, "spo2": 91, "bp_systolic": 90, "heart_rate": 40, "body_temp": 35.0},
         {"rr": 3, "spo2": 3, "sbp": 3, "pulse": 3, "temp": 3}),
        ({"resp_rate": 9, "spo2": 92, "bp_systolic": 91, "heart_rate": 41, "body_temp": 35.1},
         {"rr": 1, "spo2": 2, "sbp": 2, "pulse": 1, "temp": 1}),
        ({"resp_rate": 12, "spo2": 96, "bp_systolic": 111, "heart_rate": 51, "body_temp": 36.1},
         {"rr": 0, "spo2": 0, "sbp": 0, "pulse": 0, "temp": 0}),
        ({"resp_rate": 21, "spo2": 95, "bp_systolic": 219, "heart_rate": 91, "body_temp": 38.05},
         {"rr": 2, "spo2": 1, "sbp": 0, "pulse": 1, "temp": 1}),
        ({"resp_rate": 25, "bp_systolic": 220, "heart_rate": 131, "body_temp": 39.1},
         {"rr": 3, "sbp": 3, "pulse": 3, "temp": 2}),
        ({"resp_rate": 20.5, "heart_rate": 110.5, "body_temp": 38.04}, {"rr": 2, "pulse": 2, "temp": 0}),
    ],
)  # fmt: skip
def test_news2_scores_follow_the_table_with_half_up_rounding(values: dict[str, float], scores: dict[str, int]) -> None:
    assert news2_scores(values) == scores


def test_news2_risk_bands() -> None:
    assert news2({"resp_rate": 25}) == ("low-medium", 3)
    assert news2({"resp_rate": 25, "heart_rate": 111}) == ("medium", 5)
    assert news2({"resp_rate": 25, "heart_rate": 131, "spo2": 94}) == ("high", 7)
    assert news2({"resp_rate": 21, "heart_rate": 111}) == ("low", 4)


def test_alerts_required_from_the_final_state_possible_from_each_request() -> None:
    hour = T0.replace(minute=0)
    calm = _sent([_reading("d1", "resp_rate", 15, 0), _reading("d1", "heart_rate", 70, 0)], at=1.0)
    worse = _sent([_reading("d1", "resp_rate", 26, 60), _reading("d1", "heart_rate", 115, 60)], at=2.0)
    worst = _sent([_reading("d1", "spo2", 90, 120)], at=3.0)
    truth = expect([calm, worse, worst])
    assert truth.alerts_required == {("p1", hour): "high"}
    assert truth.alerts_possible[("p1", hour)] == {"low", "medium", "high"}
    assert truth.alert_reached_at[("p1", hour, "medium")] == 2.0


def test_fleet_places_anomalies_after_calm_and_sends_a_spike_with_its_successor() -> None:
    device = make_fleet(1, seed=3, mix=FleetMix(spike=1.0, alt_unit=0, loinc_code=0, retry_duplicate=0))[0]
    sent = []
    for second in range(CALM + 2):
        out = device.take(T0 + timedelta(seconds=second))
        sent.append(out)
    assert all(out is not None and "spike" not in out.intents for out in sent[:CALM])
    assert sent[CALM] is None  # the spike snapshot waits for its successor
    both = sent[CALM + 1]
    assert both is not None
    assert "spike" in both.intents
    assert both.intents.index("spike") < len(both.intents) - 3  # successors follow in the same request


def test_campaign_fleet_lands_as_the_truth_says_in_a_dry_run() -> None:
    fleet = make_fleet(20, seed=5, prefix="x", mix=campaign_mix())
    journal = []
    for second in range(40):
        for device in fleet:
            out = device.take(T0 + timedelta(seconds=second))
            if out is not None and out.body is None:
                journal.append(Sent(device.device_id, device.patient_id, out.readings, out.intents, 202,
                                    list(out.expected_rejects().items()), second, second))  # fmt: skip
    truth = expect(journal)
    assert set(truth.quarantine.values()) == {"spike", "implausible"}
    assert truth.alerts_required  # some patients deteriorate
    assert truth.rejects_expected


def test_shapes_are_bounded_and_shaped() -> None:
    assert users_at("steady", 0, 30, 10) == 30
    assert users_at("steady", 10, 30, 10) is None
    assert users_at("ramp", 0, 30, 10) == 3
    assert users_at("ramp", 7, 30, 10) == 30
    assert users_at("spike", 1, 30, 10) == 10
    assert users_at("spike", 5, 30, 10) == 30
    with pytest.raises(ValueError, match="unknown load shape"):
        users_at("sawtooth", 0, 1, 1)


def test_an_intended_spike_within_the_minimum_deviation_is_not_a_spike() -> None:
    """CONTRACT §4: "far" is beyond the metric's floor (respiratory rate 8 /min) from both neighbours."""
    values = [12.0, 12.0, 11.0, 10.0, 9.0, 2.0, 10.0, 11.0]
    series = [_reading("d1", "resp_rate", v, i) for i, v in enumerate(values)]
    intents = ["normal"] * len(values)
    intents[5] = "spike"
    truth = expect([_sent(series, intents, at=1.0)])
    assert not truth.quarantine
    assert truth.fact[("d1", "resp_rate", T0 + timedelta(seconds=5))] == 2.0


def test_every_spike_or_step_travels_with_the_next_reading_of_its_metric() -> None:
    """Blood pressure comes every 5th snapshot, temperature every 10th: the request waits for the successor."""
    fleet = make_fleet(40, seed=9, mix=FleetMix(spike=0.05, sustained_change=0.02, alt_unit=0.2, loinc_code=0.2))
    requests = []
    for second in range(120):
        requests += [out for d in fleet if (out := d.take(T0 + timedelta(seconds=second))) is not None]
    requests += [out for d in fleet if (out := d.flush(T0 + timedelta(seconds=120))) is not None]
    anomalies = 0
    for out in requests:
        names = [resolve_metric(r["metric"]).name for r in out.readings]  # type: ignore[union-attr]
        for index, intent in enumerate(out.intents):
            if intent in ("spike", "step"):
                anomalies += 1
                assert names[index] in names[index + 1 :], (names[index], out.intents)
    assert anomalies > 20


def test_alert_reconciliation_counts_missing_unexpected_and_doubled() -> None:

    hour = T0.replace(minute=0)
    calm = _sent([_reading("d1", "resp_rate", 15, 0), _reading("d1", "heart_rate", 70, 0)], at=1.0)
    worse = _sent([_reading("d1", "resp_rate", 26, 60), _reading("d1", "heart_rate", 115, 60)], at=2.0)
    worst = _sent([_reading("d1", "spo2", 90, 120)], at=3.0)
    truth = expect([calm, worse, worst])

    def alert(risk: str) -> dict[str, Any]:
        return {"patient_id": "p1", "hour_start": hour, "risk": risk, "raised_at": T0 + timedelta(minutes=3)}

    good = Report("alerts", truth, alerts_table=True)
    compare_alerts(good, [alert("medium"), alert("high")])
    assert (good.alerts_missing, good.alerts_unexpected, good.alerts_doubled) == (0, 0, 0)
    assert good.ok
    none = Report("alerts", truth, alerts_table=True)
    compare_alerts(none, [alert("medium")])  # the final risk is high: a high alert is required
    assert none.alerts_missing == 1
    assert not none.ok
    wrong = Report("alerts", truth, alerts_table=True)
    compare_alerts(wrong, [alert("high"), alert("high"), alert("low-medium")])
    assert (wrong.alerts_missing, wrong.alerts_unexpected, wrong.alerts_doubled) == (0, 1, 1)
    absent = Report("alerts", truth, alerts_table=False)  # issue 13's table not there: reported, not judged
    assert absent.ok
