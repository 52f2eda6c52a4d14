"""Exponential backoff with jitter, for the live feed's reconnect loops.

The n-th consecutive failure waits ``min(max_s, initial_s * factor**(n-1))`` seconds, scaled by a random
factor drawn uniformly from ``[1 - jitter, 1]`` ("equal jitter": never more than the nominal delay, never
less than ``1 - jitter`` of it), so that many pairs dropped by one disconnect do not all come back in the
same instant. A success calls ``reset()`` and the next failure starts from ``initial_s`` again.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays in seconds for consecutive failures. Not thread-safe: one loop owns one Backoff.

    ``rng``: a ``random.Random`` (seed it for reproducible delays in tests); a fresh unseeded one when
    None. ``failures`` counts the failures since the last ``reset()``.
    """

    __slots__ = ("factor", "failures", "initial_s", "jitter", "max_s", "_rng")

    def __init__(
        self,
        initial_s: float = 0.25,
        max_s: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError(
                f"backoff needs 0 < initial_s <= max_s, factor >= 1 and 0 <= jitter <= 1; got initial_s={initial_s}, "
                f"max_s={max_s}, factor={factor}, jitter={jitter}"
            )
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def nominal(self, failures: int) -> float:
        """The delay before jitter after ``failures`` consecutive failures (>= 1), seconds."""
        # Cap the exponent: factor**n overflows a float long before any real outage ends.
        n = min(max(failures, 1) - 1, 64)
        return min(self.max_s, self.initial_s * self.factor**n)

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before retrying, seconds."""
        self.failures += 1
        nominal = self.nominal(self.failures)
        return nominal * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """A success: the next failure waits ``initial_s`` (with jitter) again."""
        self.failures = 0
