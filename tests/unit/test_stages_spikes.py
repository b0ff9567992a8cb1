"""Spike removal: isolated spikes only; sustained changes, ordinary variability and edges are kept."""

from __future__ import annotations

import numpy as np

from tests.helpers.vitals import R, concat_context, context_table, readings_table, series, us, values_of
from workers.stages.remove_spikes import SpikeConfig, remove_spikes

NOW = us(10_000)


def test_isolated_spike_is_quarantined() -> None:
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 71, 69, 150, 70, 72])), now_us=NOW)
    assert values_of(result.quarantined) == [150.0]
    assert result.quarantined.column("reason").to_pylist() == ["spike"]
    assert "isolated spike" in result.quarantined.column("detail")[0].as_py()
    assert values_of(result.accepted) == [70.0, 71.0, 69.0, 70.0, 72.0]


def test_downward_spike_too() -> None:
    result = remove_spikes(readings_table(series("d", "spo2", [97, 98, 97, 70, 97, 96])), now_us=NOW)
    assert values_of(result.quarantined) == [70.0]


def test_sustained_change_of_three_is_never_quarantined() -> None:
    t = readings_table(series("d", "heart_rate", [70, 71, 69, 110, 111, 109, 110]))
    result = remove_spikes(t, now_us=NOW)
    assert result.quarantined.num_rows == 0
    assert result.accepted.num_rows == 7


def test_ordinary_variability_is_never_quarantined() -> None:
    rng = np.random.default_rng(1)
    values = list(75 + rng.normal(0, 6, 500))
    result = remove_spikes(readings_table(series("d", "heart_rate", values)), now_us=NOW)
    assert result.quarantined.num_rows == 0


def test_deviation_below_the_floor_is_not_a_spike_even_if_statistically_far() -> None:
    # Flat series (MAD 0): a 20 /min jump is beyond any MAD threshold but below the 25 /min floor.
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 70, 70, 90, 70, 70])), now_us=NOW)
    assert result.quarantined.num_rows == 0


def test_noisy_series_raises_the_threshold_above_the_floor() -> None:
    noisy = context_table(series("d", "heart_rate", [60, 95, 62, 98, 65, 92, 61, 97]), "accepted")
    new = readings_table(series("d", "heart_rate", [128, 62, 64], start_s=8))
    assert remove_spikes(new, noisy, now_us=NOW).quarantined.num_rows == 0
    quiet = context_table(series("d", "heart_rate", [70, 71, 69, 70, 71, 70, 69, 70]), "accepted")
    assert values_of(remove_spikes(new, quiet, now_us=NOW).quarantined) == [128.0]


def test_neighbours_that_disagree_mean_no_spike() -> None:
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 70, 150, 110, 110])), now_us=NOW)
    assert result.quarantined.num_rows == 0


def test_newest_candidate_is_held_until_its_successor_or_the_hold_limit() -> None:
    t = readings_table(series("d", "heart_rate", [70, 71, 69, 130]))
    held = remove_spikes(t, now_us=us(10), config=SpikeConfig(hold_us=60_000_000))
    assert values_of(held.held) == [130.0]
    assert held.accepted.num_rows == 3
    released = remove_spikes(t, now_us=us(3 + 61), config=SpikeConfig(hold_us=60_000_000))
    assert released.held.num_rows == 0
    assert values_of(released.accepted)[-1] == 130.0


def test_newest_reading_close_to_its_predecessor_is_not_held() -> None:
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 71, 69, 72])), now_us=us(4))
    assert result.held.num_rows == 0
    assert result.accepted.num_rows == 4


def test_spike_at_the_batch_boundary_is_decided_with_the_next_batch() -> None:
    context = concat_context(
        context_table(series("d", "heart_rate", [70, 71, 69]), "accepted"),
        context_table([R("d", "heart_rate", 3, 150)], "pending"),
    )
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 71], start_s=4)), context, now_us=us(6))
    assert values_of(result.quarantined) == [150.0]
    assert values_of(result.accepted) == [70.0, 71.0]
    assert result.still_pending == 0


def test_sustained_change_at_the_batch_boundary_is_accepted() -> None:
    context = concat_context(
        context_table(series("d", "heart_rate", [70, 71, 69]), "accepted"),
        context_table([R("d", "heart_rate", 3, 110)], "pending"),
    )
    result = remove_spikes(readings_table(series("d", "heart_rate", [111, 109], start_s=4)), context, now_us=us(6))
    assert result.quarantined.num_rows == 0
    assert values_of(result.accepted) == [110.0, 111.0, 109.0]


def test_pending_without_successor_stays_pending_then_expires() -> None:
    context = context_table([R("d", "spo2", 3, 80, received_s=3)], "pending")
    other = readings_table(series("e", "spo2", [97, 97]))
    kept = remove_spikes(other, context, now_us=us(30))
    assert kept.still_pending == 1
    assert kept.held.num_rows == 0
    expired = remove_spikes(other, context, now_us=us(70))
    assert expired.still_pending == 0
    assert 80.0 in values_of(expired.accepted)


def test_reading_after_a_spike_is_compared_with_the_spikes_neighbours() -> None:
    # 72 follows the spike: compared with 70 (not 150) it is not a candidate, so it is not held.
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 71, 70, 150, 70, 72])), now_us=us(6))
    assert result.held.num_rows == 0
    assert values_of(result.quarantined) == [150.0]


def test_per_metric_floor_and_threshold_are_configurable() -> None:
    t = readings_table(series("d", "heart_rate", [70, 70, 70, 90, 70, 70]))
    config = SpikeConfig(floors={"heart_rate": 10.0}, threshold_mads={"heart_rate": 3.0})
    assert values_of(remove_spikes(t, now_us=NOW, config=config).quarantined) == [90.0]


def test_series_are_independent_and_first_reading_has_no_left_neighbour() -> None:
    t = readings_table(series("a", "heart_rate", [150, 70, 71]) + series("b", "heart_rate", [70, 71, 70]))
    result = remove_spikes(t, now_us=NOW)
    assert result.quarantined.num_rows == 0
    assert result.accepted.num_rows == 6
