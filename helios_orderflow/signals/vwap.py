"""Session-anchored VWAP with volume-weighted standard-deviation bands.

VWAP = sum(p * q) / sum(q) over the session's trades; sigma = sqrt(sum(q * (p - VWAP)^2) / sum(q)), the
volume-weighted standard deviation of trade prices; bands at VWAP +/- 1 and 2 sigma. Sums are kept relative to
the session's first trade price so that the variance does not lose precision to the price level
(E[p^2] - E[p]^2 with p ~ 6e4 would cancel ~8 significant digits).
"""

from __future__ import annotations

import math


class SessionVwap:
    __slots__ = ("ref", "sum_q", "sum_dq", "sum_d2q")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ref = math.nan
        self.sum_q = 0.0
        self.sum_dq = 0.0
        self.sum_d2q = 0.0

    def add(self, price: float, amount: float) -> None:
        if self.sum_q == 0.0:
            self.ref = price
        d = price - self.ref
        self.sum_q += amount
        self.sum_dq += d * amount
        self.sum_d2q += d * d * amount

    @property
    def vwap(self) -> float:
        """NaN before the session's first trade."""
        if self.sum_q <= 0.0:
            return math.nan
        return self.ref + self.sum_dq / self.sum_q

    @property
    def std(self) -> float:
        if self.sum_q <= 0.0:
            return math.nan
        m = self.sum_dq / self.sum_q
        return math.sqrt(max(self.sum_d2q / self.sum_q - m * m, 0.0))

    def bands(self) -> tuple[float, float, float, float, float]:
        """``(vwap, upper_1, lower_1, upper_2, lower_2)``; all NaN before the first trade."""
        v = self.vwap
        s = self.std
        return v, v + s, v - s, v + 2 * s, v - 2 * s
