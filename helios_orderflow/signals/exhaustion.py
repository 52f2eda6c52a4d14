"""Exhaustion: price makes a new extreme that neither CVD nor aggressive volume confirms.

Trades are bucketed by the engine's clock into 1-second buckets. When a bucket closes (at time ``t``, a whole
second), with ``w = window_s`` and ``L = lookback_s`` seconds, the *recent* window is the last ``w`` buckets
``[t - w, t)`` and the *prior* window the ``L - w`` buckets before it ``[t - L, t - w)``:

- **up-exhaustion** when (1) the highest trade price in the recent window is above the highest in the prior
  window (a new high), (2) the highest CVD (since start, sampled after each trade) in the recent window is
  not above the highest in the prior window (CVD fails to confirm), and (3) taker buy volume in the recent
  window is below ``volume_frac`` x the average taker buy volume per ``w`` seconds in the prior window
  (``volume_frac * prior_buy * w / (L - w)``): buying is drying up into the high.
- **down-exhaustion** mirrored: new low, CVD not below its prior low, taker sell volume drying up.

Both windows need trades, and a signal needs ``L`` seconds of history since the engine started. A signal
fires when its condition becomes true at a bucket close (once, until the condition has been false at a
close), stamped with the bucket's end time ``t``; it uses only events the engine processed before ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from helios_orderflow.core.settings import ExhaustionSettings

BUCKET_US = 1_000_000

# The reductions of ``ndarray.max/min/sum`` without their Python wrappers (the same loops: the same bits).
_max = np.maximum.reduce
_min = np.minimum.reduce
_sum = np.add.reduce


@dataclass(frozen=True, slots=True)
class ExhaustionSignal:
    ts_us: int
    #: "up": buying exhausted at a new high (bearish); "down": selling exhausted at a new low (bullish).
    direction: Literal["up", "down"]
    #: The new extreme (recent window) and the prior window's extreme, quote units.
    price: float
    prior_price: float
    #: CVD extreme in the recent window and in the prior window, base units.
    cvd: float
    prior_cvd: float
    #: Taker volume in the move's direction over the recent window, and the threshold it fell below.
    volume: float
    volume_threshold: float


class ExhaustionDetector:
    """Ring of 1-second buckets (stored twice so any window is one contiguous slice)."""

    def __init__(self, settings: ExhaustionSettings) -> None:
        self.settings = settings
        self.w = int(settings.window_s)
        self.n = int(settings.lookback_s)
        n = self.n
        self._hi = np.full(2 * n, -math.inf)
        self._lo = np.full(2 * n, math.inf)
        self._cvd_hi = np.full(2 * n, -math.inf)
        self._cvd_lo = np.full(2 * n, math.inf)
        self._buy = np.zeros(2 * n)
        self._sell = np.zeros(2 * n)
        self.closed = 0  # buckets closed since (re)start
        self._up_on = False
        self._down_on = False
        self._reset_bucket(math.nan)
        self.new_candle()

    def new_candle(self) -> None:
        """Start the open candle's measurements (the engine calls this at each candle close).

        ``up_volume_ratio`` / ``down_volume_ratio``: the smallest ratio of the recent taker buy / sell volume to
        its average per window over the prior part of the lookback (``volume / (prior x w / (L - w))``, what
        ``volume_frac`` compares), over the bucket closes since at which an up / down exhaustion that fired
        since still held; NaN when none fired. Each is < ``volume_frac`` whenever its signal fired, so "fired
        and ratio < x" with x >= ``volume_frac`` is the signal itself, and a smaller x a stricter one."""
        self.up_volume_ratio = math.nan
        self.down_volume_ratio = math.nan
        #: The up / down condition holding now began with a signal in the open candle.
        self._up_fresh = False
        self._down_fresh = False

    def __setstate__(self, state: dict[str, object]) -> None:
        # An engine checkpoint pickled before the measurements existed starts them empty.
        self.new_candle()
        self.__dict__.update(state)

    def _reset_bucket(self, cvd: float) -> None:
        self.b_hi = -math.inf
        self.b_lo = math.inf
        self.b_cvd_hi = cvd if not math.isnan(cvd) else -math.inf
        self.b_cvd_lo = cvd if not math.isnan(cvd) else math.inf
        self.b_buy = 0.0
        self.b_sell = 0.0

    def reset(self, cvd: float) -> None:
        """Forget the history (after a jump in time longer than the lookback)."""
        for a, v in ((self._hi, -math.inf), (self._lo, math.inf), (self._cvd_hi, -math.inf),
                     (self._cvd_lo, math.inf), (self._buy, 0.0), (self._sell, 0.0)):
            a[:] = v
        self.closed = 0
        self._up_on = self._down_on = False
        self._up_fresh = self._down_fresh = False  # the candle's measurements so far stay
        self._reset_bucket(cvd)

    def add_trade(self, price: float, amount: float, is_buy: bool, cvd_after: float) -> None:
        if price > self.b_hi:
            self.b_hi = price
        if price < self.b_lo:
            self.b_lo = price
        if cvd_after > self.b_cvd_hi:
            self.b_cvd_hi = cvd_after
        if cvd_after < self.b_cvd_lo:
            self.b_cvd_lo = cvd_after
        if is_buy:
            self.b_buy += amount
        else:
            self.b_sell += amount

    def close_bucket(self, end_us: int, cvd: float) -> list[ExhaustionSignal]:
        """Close the bucket ending at ``end_us``; ``cvd`` = CVD now (carried into empty buckets)."""
        n = self.n
        i = self.closed % n
        for arr, v in ((self._hi, self.b_hi), (self._lo, self.b_lo), (self._cvd_hi, self.b_cvd_hi),
                       (self._cvd_lo, self.b_cvd_lo), (self._buy, self.b_buy), (self._sell, self.b_sell)):
            arr[i] = v
            arr[i + n] = v
        self.closed += 1
        self._reset_bucket(cvd)
        if self.closed < n:
            return []
        start = self.closed % n  # oldest bucket of the chronological window [start, start + n)
        split = start + n - self.w
        end = start + n
        signals: list[ExhaustionSignal] = []
        up = down = False
        hi_r = _max(self._hi[split:end])
        hi_p = _max(self._hi[start:split])
        if hi_r > hi_p > -math.inf:
            cvd_r = _max(self._cvd_hi[split:end])
            cvd_p = _max(self._cvd_hi[start:split])
            vol = float(_sum(self._buy[split:end]))
            prior = float(_sum(self._buy[start:split]))
            thr = self.settings.volume_frac * prior * self.w / (n - self.w)
            if cvd_r <= cvd_p and vol < thr:
                up = True
                if not self._up_on:
                    signals.append(ExhaustionSignal(end_us, "up", float(hi_r), float(hi_p), float(cvd_r),
                                                    float(cvd_p), vol, thr))
                    self._up_fresh = True
                if self._up_fresh:  # thr > 0, so prior > 0
                    ratio = vol / (prior * self.w / (n - self.w))
                    if not ratio >= self.up_volume_ratio:  # also replaces NaN
                        self.up_volume_ratio = ratio
        lo_r = _min(self._lo[split:end])
        lo_p = _min(self._lo[start:split])
        if lo_r < lo_p < math.inf:
            cvd_r = _min(self._cvd_lo[split:end])
            cvd_p = _min(self._cvd_lo[start:split])
            vol = float(_sum(self._sell[split:end]))
            prior = float(_sum(self._sell[start:split]))
            thr = self.settings.volume_frac * prior * self.w / (n - self.w)
            if cvd_r >= cvd_p and vol < thr:
                down = True
                if not self._down_on:
                    signals.append(ExhaustionSignal(end_us, "down", float(lo_r), float(lo_p), float(cvd_r),
                                                    float(cvd_p), vol, thr))
                    self._down_fresh = True
                if self._down_fresh:
                    ratio = vol / (prior * self.w / (n - self.w))
                    if not ratio >= self.down_volume_ratio:
                        self.down_volume_ratio = ratio
        self._up_on = up
        self._down_on = down
        self._up_fresh = self._up_fresh and up
        self._down_fresh = self._down_fresh and down
        return signals
