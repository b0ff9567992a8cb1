"""Spike removal: isolated spikes only; sustained changes, ordinary variability and edges are kept."""

from __future__ import annotations

import numpy as np
import pytest

from schemas.arrow import VITAL_COLUMNS
from tests.helpers.vitals import R, concat_context, context_table, readings_table, series, us, values_of
from workers.stages.remove_spikes import SpikeConfig, SpikeResult, remove_spikes
from workers.stages.result import with_reason

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


# Exact thresholds: floor 1 /min and k = 1, so T = 1.4826 * MAD of the preceding window (the detail shows T).
def _exact(window: int = 8) -> SpikeConfig:
    return SpikeConfig(floors={"heart_rate": 1.0}, threshold_mads={"heart_rate": 1.0}, window=window)


FLAT = SpikeConfig(floors={"heart_rate": 25.0})  # MAD 0 before each reading below: T = 25


def _details(result: SpikeResult) -> list[str]:
    return [str(d) for d in result.quarantined.column("detail").to_pylist()]


def test_threshold_is_the_mad_of_exactly_the_window_preceding_the_reading() -> None:
    # window 3 before 150.1234: [70, 72, 76] (not 60 before them, not 150.1234 itself): median 72, MAD 2.
    values = [70, 60, 70, 72, 76, 150.1234, 77]
    result = remove_spikes(readings_table(series("d", "heart_rate", values)), now_us=NOW, config=_exact(window=3))
    assert _details(result) == [
        "isolated spike: deviates 73.12 from both neighbours, which agree (threshold 2.97)"  # min(74.12, 73.12)
    ]
    assert values_of(result.accepted) == [70.0, 60.0, 70.0, 72.0, 76.0, 77.0]
    assert result.held.num_rows == 0


def test_window_shorter_than_the_series_start_and_other_series_do_not_count() -> None:
    # Device a comes first; b's 150 has 4 preceding readings of its own (window 8): [70, 72, 76, 71]: MAD 1.
    rows = series("a", "heart_rate", [100, 130, 100, 130]) + series("b", "heart_rate", [70, 72, 76, 71, 150, 71])
    result = remove_spikes(readings_table(rows), now_us=NOW, config=_exact())
    assert _details(result) == ["isolated spike: deviates 79 from both neighbours, which agree (threshold 1.48)"]
    assert result.quarantined.column("device_id").to_pylist() == ["b"]


def test_a_spike_in_each_of_two_series_is_found() -> None:
    rows = series("a", "heart_rate", [70, 71, 69, 150, 70]) + series("b", "heart_rate", [80, 81, 79, 160, 80])
    result = remove_spikes(readings_table(rows), now_us=NOW)
    assert values_of(result.quarantined) == [150.0, 160.0]
    assert result.quarantined.column("device_id").to_pylist() == ["a", "b"]


def test_threshold_mads_default_to_3_5_for_a_metric_without_one() -> None:
    config = SpikeConfig(floors={"heart_rate": 1.0}, threshold_mads={})
    result = remove_spikes(readings_table(series("b", "heart_rate", [70, 72, 76, 71, 150, 71])), now_us=NOW,
                           config=config)  # fmt: skip
    assert _details(result) == ["isolated spike: deviates 79 from both neighbours, which agree (threshold 5.19)"]


def test_a_metric_without_a_floor_is_never_a_spike() -> None:
    t = readings_table(series("d", "heart_rate", [70, 71, 69, 150, 70, 72]))
    for floors in ({"spo2": 1.0}, {}):
        result = remove_spikes(t, now_us=NOW, config=SpikeConfig(floors=floors))
        assert result.quarantined.num_rows == 0
        assert result.accepted.num_rows == 6


def test_fewer_than_min_context_preceding_readings_is_no_spike_whatever_other_candidates_have() -> None:
    # 150 has two preceding readings; the 70 after it (a candidate too, far from 150) has three.
    result = remove_spikes(readings_table(series("d", "heart_rate", [70, 71, 150, 70, 70, 71])), now_us=NOW)
    assert result.quarantined.num_rows == 0
    assert result.accepted.num_rows == 6


def test_boundaries_are_strict_beyond_the_threshold_and_inclusive_for_agreement() -> None:
    # 95 deviates exactly T from its previous reading: not far, so the newest reading is not held.
    at_t = remove_spikes(readings_table(series("d", "heart_rate", [70, 70, 70, 95])), now_us=us(4), config=FLAT)
    assert at_t.held.num_rows == 0
    assert at_t.accepted.num_rows == 4
    # 100 deviates exactly T from its next reading: not a spike.
    next_at_t = remove_spikes(
        readings_table(series("d", "heart_rate", [70, 70, 70, 100, 75, 75])), now_us=NOW, config=FLAT
    )
    assert next_at_t.quarantined.num_rows == 0
    # Neighbours 70 and 82.5 differ by exactly agree_fraction * T = 12.5: they agree, 110 is a spike.
    agree_at = remove_spikes(
        readings_table(series("d", "heart_rate", [70, 70, 70, 110, 82.5, 82.5])), now_us=NOW, config=FLAT
    )
    assert values_of(agree_at.quarantined) == [110.0]


def test_hold_ends_exactly_hold_us_after_receipt_not_measurement() -> None:
    # Measured at 3 s, received at 50 s: held until 50 s + hold_us, whatever its measurement time.
    rows = [*series("d", "heart_rate", [70, 71, 69]), R("d", "heart_rate", 3, 130, received_s=50)]
    config = SpikeConfig(hold_us=60_000_000)
    assert values_of(remove_spikes(readings_table(rows), now_us=us(70), config=config).held) == [130.0]
    assert values_of(remove_spikes(readings_table(rows), now_us=us(110) - 1, config=config).held) == [130.0]
    released = remove_spikes(readings_table(rows), now_us=us(110), config=config)
    assert released.held.num_rows == 0
    assert values_of(released.accepted) == [70.0, 71.0, 69.0, 130.0]


def test_a_single_new_reading_is_accepted_at_once() -> None:
    result = remove_spikes(readings_table([R("d", "heart_rate", 0, 70)]), now_us=us(1))
    assert values_of(result.accepted) == [70.0]
    assert result.held.num_rows == 0
    assert result.quarantined.num_rows == 0
    assert result.still_pending == 0


def test_nothing_to_decide_gives_empty_tables_of_the_stage_schemas() -> None:
    t = readings_table([])
    result = remove_spikes(t, now_us=NOW)
    vitals = t.select(list(VITAL_COLUMNS)).schema
    assert result.accepted.schema == vitals
    assert result.held.schema == vitals
    assert result.quarantined.schema == with_reason(t.select(list(VITAL_COLUMNS)), "spike", None).schema
    assert (result.accepted.num_rows, result.held.num_rows, result.quarantined.num_rows) == (0, 0, 0)
    assert result.still_pending == 0
    # Context alone (accepted rows, no pending ones) leaves nothing to decide either.
    context = context_table(series("d", "heart_rate", [70, 71]), "accepted")
    assert remove_spikes(t, context, now_us=NOW).accepted.num_rows == 0


def test_config_bounds() -> None:
    assert SpikeConfig(window=1, hold_us=0).window == 1
    with pytest.raises(ValueError, match=r"^window must be >= 1$"):
        SpikeConfig(window=0)
    with pytest.raises(ValueError, match=r"^hold_us must be >= 0$"):
        SpikeConfig(hold_us=-1)


def test_each_candidate_has_its_own_mad() -> None:
    # The noisy start makes other candidates' MADs large; 150.1234's own window [70, 72, 76] has MAD 2.
    values = [70, 20, 120, 70, 72, 76, 150.1234, 77]
    result = remove_spikes(readings_table(series("d", "heart_rate", values)), now_us=NOW, config=_exact(window=3))
    assert _details(result) == ["isolated spike: deviates 73.12 from both neighbours, which agree (threshold 2.97)"]


def test_a_newest_reading_exactly_at_a_mad_threshold_is_not_held() -> None:
    # k * 1.4826 is exactly 10 and the MAD of [70, 71, 69] is 1: T = 10, and 79 is exactly 10 from 69.
    config = SpikeConfig(floors={"heart_rate": 1.0}, threshold_mads={"heart_rate": 10 / 1.4826})
    at_t = remove_spikes(readings_table(series("d", "heart_rate", [70, 71, 69, 79])), now_us=us(4), config=config)
    assert at_t.held.num_rows == 0
    beyond = remove_spikes(readings_table(series("d", "heart_rate", [70, 71, 69, 79.5])), now_us=us(4), config=config)
    assert values_of(beyond.held) == [79.5]
