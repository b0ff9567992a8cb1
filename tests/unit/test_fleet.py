"""The simulated fleet produces valid, realistic, reproducible readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loadtest.fleet import CALM, FleetMix, clinical_fleet, make_fleet
from schemas.catalogue import resolve_metric


def test_fleet_is_reproducible_and_valid() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    a = [d.snapshot(now) for d in make_fleet(5, seed=7)]
    b = [d.snapshot(now) for d in make_fleet(5, seed=7)]
    assert a == b
    for snapshot in a:
        for reading in snapshot:
            metric = resolve_metric(reading["metric"])
            assert metric is not None
            metric.to_canonical(reading["value"], reading.get("unit"))
            assert reading["measured_at"].endswith("Z")


def test_ordinary_readings_are_plausible_and_spikes_happen_when_asked() -> None:
    quiet = make_fleet(20, seed=1)
    for device in quiet:
        device.mix = FleetMix(spike=0, implausible=0, sustained_change=0, alt_unit=0, loinc_code=0)
    start = datetime(2026, 11, 25, tzinfo=UTC)
    for step in range(50):
        for device in quiet:
            for reading in device.snapshot(start + timedelta(seconds=step)):
                metric = resolve_metric(reading["metric"])
                assert metric is not None
                assert metric.plausible_min <= reading["value"] <= metric.plausible_max
    noisy = make_fleet(1, seed=2)[0]
    noisy.mix = FleetMix(implausible=1.0)
    for step in range(CALM):  # anomalies come after ordinary readings (spike detector context)
        assert all(r["value"] < 300 for r in noisy.snapshot(start + timedelta(seconds=step)))
    values = [r["value"] for r in noisy.snapshot(start + timedelta(seconds=CALM))]
    assert any(v > 300 for v in values)


def test_a_few_patients_deteriorate_to_a_high_news2_within_minutes() -> None:
    import numpy as np

    from workers.stages.score_news2 import CHART, score_values

    fleet = clinical_fleet(20, seed=3)
    assert sum(d.deteriorating for d in fleet) == 2
    assert clinical_fleet(1, seed=3)[0].deteriorating is False
    start = datetime(2026, 11, 25, tzinfo=UTC)

    def total_after(device_index: int, snapshots: int) -> int:
        device = clinical_fleet(20, seed=3)[device_index]
        device.mix = FleetMix(spike=0, implausible=0, sustained_change=0, alt_unit=0, loinc_code=0)
        last: dict[str, float] = {}
        for step in range(snapshots):
            for reading in device.snapshot(start + timedelta(seconds=step)):
                last[reading["metric"]] = reading["value"]
        return sum(int(score_values(p, np.array([last[p.metric]]))[0]) for p in CHART)

    sick = [i for i, d in enumerate(fleet) if d.deteriorating]
    assert all(total_after(i, 240) >= 7 for i in sick)  # high within 4 minutes at one snapshot a second
    assert all(total_after(i, 240) < 5 for i in range(20) if i not in sick)
