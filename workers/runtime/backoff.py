"""Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"). Pure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """``delay(attempt)`` is uniform in [0, min(cap, base * 2**attempt)]; ``attempt`` counts from 0.

    ``rand`` returns a float in [0, 1); inject a fixed one in tests.
    """

    base: float = 0.1
    cap: float = 20.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError("backoff needs 0 < base <= cap")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # 2**attempt overflows float for huge attempts; cap the exponent first.
        return min(self.cap, self.base * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int) -> float:
        return self.rand() * self.ceiling(attempt)
