"""The simulated fleet produces valid, realistic, reproducible readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loadtest.fleet import CALM, FleetMix, make_fleet
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
