"""Exponential backoff with full jitter. No I/O."""

from __future__ import annotations

import pytest

from workers.runtime.backoff import Backoff


def test_ceiling_doubles_then_caps() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    assert [backoff.ceiling(a) for a in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_scales_the_ceiling_by_the_injected_random() -> None:
    assert Backoff(base=1, cap=100, rand=lambda: 0.5).delay(3) == 4.0
    assert Backoff(base=1, cap=100, rand=lambda: 0.0).delay(3) == 0.0
    assert Backoff(base=1, cap=100, rand=lambda: 0.999).delay(10) < 100


def test_huge_attempt_does_not_overflow() -> None:
    assert Backoff(base=0.1, cap=5.0, rand=lambda: 1.0).delay(10_000) == 5.0


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (2.0, 1.0)])
def test_invalid_parameters(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=base, cap=cap)


def test_negative_attempt_rejected() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().ceiling(-1)
