"""Liquidity walls: price bins holding far more resting size than the bins around them, tracked from the
moment they appear until they end.

Definition (defaults in ``WallSettings``, documented in docs/signals.md). Every ``scan_interval_ms`` of event
time, with the book in sync:
1. Levels within mid +/- ``range_pct`` % are summed per price bin (the heatmap's bin), per side. A side whose
   ``min_levels`` best levels reach farther (a thin book) is scanned out to the last of them, but never beyond
   the heatmap's range (``max_range``).
2. ``median`` = the median size of the non-empty bins of both sides in that range; a bin with size
   >= ``size_k`` x median and >= ``liquidity_k`` x the size-weighted median of the other bins of its side is
   a *candidate* (first seen = this scan's time). The weighted median (the size at which half of the other
   bins' volume sits) is what makes the rule hold on thin books: there most levels are dust (one minimum-size
   order repeated at many ticks: Gate DIS_USDT 0.024, NANO_USDT 0.197), the median is the dust size and
   3 x dust is any real order; dust has no weight in the weighted median. Leaving the bin itself out keeps one
   big wall holding most of the volume from hiding itself; taking the other bins of its own side only keeps a
   wall on the other side from hiding it (two equal walls on one side, holding most of its volume, still
   hide each other). On dense books (BTC/USDT) the weighted median is ~1.55 x the median, below
   ``size_k / liquidity_k`` = 2, so the median rule decides there, as it always did.
3. A candidate that is still a candidate at a scan at least ``min_age_s`` after it was first seen becomes a
   *wall* (confirmed). A candidate that stops qualifying before that is forgotten.
4. A wall is then tracked at each scan (size now, peak size, distance from mid) whatever the median does,
   until its size falls below ``end_frac`` x its peak (ended "traded" or "pulled", below), or its bin
   leaves the range ("out_of_range"; on a widened side, the heatmap's range: the ``min_levels``-th level of a
   thin book moves with every order placed, and walls must not end on that), or the book loses sync ("desync").
5. Trades: taker volume printed into or beyond a tracked bin (sells at prices < high for a bid bin, buys
   at prices >= low for an ask bin) since it was first seen is its ``traded_volume``. An ending wall was
   "traded" (through) when ``traded_volume >= traded_frac x (peak - size at end)``, else "pulled".

A wall's ``price`` is its far edge, the price behind which all of its liquidity sits (bid: the bin's low,
ask: the bin's high): a stop placed beyond it is behind the whole wall. ``level_price`` is the largest level
inside the bin (where a trader sees the wall on a ladder).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

import numpy as np
from numba import njit

from helios_orderflow.core.settings import AbsorptionSettings, WallSettings
from helios_orderflow.signals.absorption import AbsorptionSignal, AbsorptionWindow
from helios_orderflow.signals.heatmap import _EPS, side_reach

WallSide = Literal["bid", "ask"]


@dataclass(frozen=True, slots=True)
class Wall:
    side: WallSide
    #: Far edge of the bin (bid: low, ask: high), quote units.
    price: float
    low: float
    high: float
    #: Price of the largest level in the bin at the last scan.
    level_price: float
    first_seen_us: int
    #: When it became a wall (-1 while only a candidate; walls reported by the engine are confirmed).
    confirmed_us: int
    last_scan_us: int
    #: Resting size in the bin at the last scan and the largest seen, base units.
    size: float
    peak_size: float
    #: Distance of ``price`` from the mid at the last scan, basis points (positive).
    distance_bps: float
    #: Taker volume into or beyond the bin since first seen, base units.
    traded_volume: float
    ended_us: int = -1
    #: "" while active; "traded", "pulled", "out_of_range" or "desync" once ended.
    end_reason: str = ""


class _Track:
    __slots__ = (
        "side", "bin", "low", "high", "level_price", "first_seen_us", "confirmed_us", "last_scan_us",
        "size", "peak", "distance_bps", "traded", "window",
    )

    def __init__(self, side: WallSide, b: int, bin_size: float, ts_us: int, window_s: float) -> None:
        self.side = side
        self.bin = b
        self.low = b * bin_size
        self.high = (b + 1) * bin_size
        self.level_price = math.nan
        self.first_seen_us = ts_us
        self.confirmed_us = -1
        self.last_scan_us = ts_us
        self.size = 0.0
        self.peak = 0.0
        self.distance_bps = math.nan
        self.traded = 0.0
        self.window = AbsorptionWindow(window_s)

    def freeze(self, ended_us: int = -1, reason: str = "") -> Wall:
        price = self.low if self.side == "bid" else self.high
        return Wall(
            self.side, price, self.low, self.high, self.level_price, self.first_seen_us, self.confirmed_us,
            self.last_scan_us, self.size, self.peak, self.distance_bps, self.traded, ended_us, reason,
        )


def _weighted_median_without(ordered: list[float], cum: list[float], size: float) -> float:
    """The size-weighted median of ``ordered`` (ascending bin sizes, ``cum`` their running sums) with one bin of
    ``size`` left out: the smallest remaining size at which the bins up to it hold half of the remaining volume.
    0.0 when no other bin is left (nothing to compare with: the median rule alone decides)."""
    n = len(ordered)
    if n < 2:
        return 0.0
    j = bisect_right(ordered, size) - 1  # the left-out bin's position
    half = (cum[-1] - size) / 2.0
    # running sums without the left-out bin: unchanged below j, minus ``size`` from j on (position j removed)
    k = bisect_left(cum, half, 0, j)
    if k < j:
        return ordered[k]
    k = bisect_left(cum, half, j + 1, n, key=lambda c: c - size)
    return ordered[min(k, n - 1)]


@njit(cache=True, nogil=True)
def _bin_sums(prices: np.ndarray, sizes: np.ndarray, bin_size: float, eps: float
              ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """(bin index per level, the first bin, the size of every bin from the first to the last (empty ones 0.0), the
    non-empty bins and their sizes (NaN counts as non-empty, as for ``np.nonzero``)) of levels in ascending price
    order. Compiled (numba): ``np.floor(prices / bin_size + eps)`` and ``np.bincount(idx - lo, weights=sizes)`` as
    NumPy computes them (the same operations; a bin adds its levels' sizes in ascending price order), in one call."""
    n = prices.shape[0]
    idx = np.empty(n, np.int64)
    for i in range(n):
        idx[i] = np.int64(np.floor(prices[i] / bin_size + eps))
    if n == 0:
        empty = np.empty(0)
        return idx, 0, empty, idx[:0], empty
    lo = idx[0]  # ascending prices: the lowest bin first
    every = np.zeros(idx[n - 1] - lo + 1)
    for i in range(n):
        every[idx[i] - lo] += sizes[i]
    filled = 0
    for v in every:
        if v != 0.0:
            filled += 1
    bins = np.empty(filled, np.int64)
    bin_sizes = np.empty(filled)
    j = 0
    for k in range(every.shape[0]):
        v = every[k]
        if v != 0.0:
            bins[j] = lo + k
            bin_sizes[j] = v
            j += 1
    return idx, lo, every, bins, bin_sizes


@njit(cache=True, nogil=True)
def _median(bid_sizes: np.ndarray, ask_sizes: np.ndarray) -> float:
    """``np.median`` of the bins of both sides (not empty), bit for bit: the middle value, or the mean of the two
    middle values as ``(a + b) / 2``; NaN when any size is NaN."""
    sizes = np.concatenate((bid_sizes, ask_sizes))
    for v in sizes:
        if v != v:
            return np.nan
    ordered = np.sort(sizes)
    h = ordered.shape[0] // 2
    return ordered[h] if ordered.shape[0] % 2 else (ordered[h - 1] + ordered[h]) / 2.0


class WallTracker:
    """Finds and tracks walls for one book (see the module docstring); also runs absorption on them."""

    def __init__(self, walls: WallSettings, absorption: AbsorptionSettings, bin_size: float,
                 max_range: float = 0.0) -> None:
        """``max_range``: how far (a fraction of the mid) a thin side may be widened, the heatmap's half range;
        never below ``walls.range_pct``."""
        self.settings = walls
        self.absorption = absorption
        self.bin_size = bin_size
        self.max_range = max(max_range, walls.range_pct / 100.0)
        self.tracks: dict[tuple[WallSide, int], _Track] = {}
        self._bid_tracks: list[_Track] = []
        self._ask_tracks: list[_Track] = []
        #: The prices a trade must reach to touch a tracked bin (``on_trade``): a buy at or above ``ask_reach``
        #: (the lowest ask bin's low), a sell below ``bid_reach`` (the highest bid bin's high); +/-inf with none.
        self.ask_reach = math.inf
        self.bid_reach = -math.inf
        self.ended: deque[Wall] = deque(maxlen=32)
        self.ended_count = 0
        self._ended_view: tuple[Wall, ...] = ()
        #: At the last scan: the median bin size, the non-empty bins in range (both sides) and how many of
        #: them were candidates (walls or not yet).
        self.median = math.nan
        self.bins_in_range = 0
        self.candidates = 0
        self._active: tuple[Wall, ...] = ()
        self._active_dirty = False
        self.new_candle()

    def new_candle(self) -> None:
        """Start the open candle's absorption measurements (the engine calls this at each candle close).

        ``bull_frac`` / ``bear_frac``: the largest fraction of a wall's peak size absorbed (its windowed taker
        volume / its peak) by the bid / ask walls whose absorption fired since, from the firing trade on while
        the absorption stays on (``AbsorptionWindow.fired``; a break through the wall ends it); 0.0 when none
        fired. Each is >= ``absorption.frac`` whenever its signal fired, so "fired and fraction >= x" with
        x <= ``absorption.frac`` is the signal itself, and a larger x a stricter one (docs/signals.md)."""
        self.bull_frac = 0.0
        self.bear_frac = 0.0
        #: Walls whose absorption fired in the open candle (their later trades can raise the fraction).
        self._absorbing: set[_Track] = set()

    def __setstate__(self, state: dict[str, object]) -> None:
        # An engine checkpoint pickled before the absorption measurements existed starts them empty.
        self.new_candle()
        self.__dict__.update(state)
        self._reach()

    def _reach(self) -> None:
        """``ask_reach`` and ``bid_reach`` of the tracked bins (after every change to them)."""
        self.ask_reach = min((t.low for t in self._ask_tracks), default=math.inf)
        self.bid_reach = max((t.high for t in self._bid_tracks), default=-math.inf)

    def wall_measures(self, wall: Wall | None) -> tuple[float, float]:
        """(size relative to the median, age in seconds) of an active ``wall`` at the last scan: its resting
        size over the median bin size in range (what ``walls.size_k`` compares; NaN when that scan had fewer
        than ``min_bins`` bins), and how long it has been a candidate or a wall (what ``walls.min_age_s``
        compares). (NaN, NaN) for None."""
        if wall is None:
            return math.nan, math.nan
        median = self.median
        size_k = wall.size / median if median > 0 else math.nan
        return size_k, (wall.last_scan_us - wall.first_seen_us) / 1e6

    # -- scans ---------------------------------------------------------------------------------------
    def scan(
        self, ts_us: int, mid: float,
        bid_p: np.ndarray, bid_q: np.ndarray, ask_p: np.ndarray, ask_q: np.ndarray,
    ) -> None:
        s = self.settings
        bs = self.bin_size
        r = s.range_pct / 100.0
        cap = self.max_range
        reach_b, reach_a = side_reach(mid, bid_p, ask_p, s.min_levels)
        rb = min(max(r, reach_b), cap)
        ra = min(max(r, reach_a), cap)
        lo_px = mid * (1.0 - rb)
        hi_px = mid * (1.0 + ra)
        # Tracked walls stay in range up to the cap on a widened side (see the module docstring).
        lo_keep = mid * (1.0 - (cap if rb > r else r))
        hi_keep = mid * (1.0 + (cap if ra > r else r))
        # Ascending prices: the bids in range are the last ones, the asks in range the first ones.
        i = int(bid_p.searchsorted(lo_px))  # the first bid >= lo_px
        j = int(ask_p.searchsorted(hi_px, "right"))  # past the last ask <= hi_px
        bp, bq = bid_p[i:], bid_q[i:]
        ap, aq = ask_p[:j], ask_q[:j]
        b_idx, b_lo, b_every, b_bins_a, b_sizes_a = _bin_sums(bp, bq, bs, _EPS)
        a_idx, a_lo, a_every, a_bins_a, a_sizes_a = _bin_sums(ap, aq, bs, _EPS)
        b_all, b_bins, b_sizes = b_every.tolist(), b_bins_a.tolist(), b_sizes_a.tolist()
        a_all, a_bins, a_sizes = a_every.tolist(), a_bins_a.tolist(), a_sizes_a.tolist()
        n = len(b_sizes) + len(a_sizes)
        current: dict[tuple[WallSide, int], float] = {}
        if n >= s.min_bins:
            median = float(_median(b_sizes_a, a_sizes_a))
            self.median = median
            thr = s.size_k * median
            liq = s.liquidity_k
            sides: tuple[tuple[WallSide, list[int], list[float]], ...] = (
                ("bid", b_bins, b_sizes), ("ask", a_bins, a_sizes))
            for side, bins, sizes in sides:
                # No NaN from here: a NaN bin makes the median NaN, and nothing is >= NaN.
                if not sizes or not max(sizes) >= thr:
                    continue
                ordered = sorted(sizes)
                cum = list(accumulate(ordered))  # the running sums ``np.cumsum`` gives (added in order)
                for b, v in zip(bins, sizes, strict=True):
                    if v >= thr and not (liq > 0 and v < liq * _weighted_median_without(ordered, cum, v)):
                        current[(side, b)] = v
        else:
            self.median = math.nan
        self.bins_in_range = n
        self.candidates = len(current)
        nb, na = len(b_all), len(a_all)
        changed = False
        for key, t in list(self.tracks.items()):
            side, b = key
            in_range = (t.low >= lo_keep) if side == "bid" else (t.high <= hi_keep)
            size = current.get(key)
            if size is None:  # the bin's size in range (0.0 outside the bins that hold levels)
                if side == "bid":
                    size = b_all[b - b_lo] if 0 <= b - b_lo < nb else 0.0
                else:
                    size = a_all[b - a_lo] if 0 <= b - a_lo < na else 0.0
            if t.confirmed_us < 0:
                if key not in current:
                    self._drop(key)  # a candidate that stopped qualifying is forgotten
                    continue
            else:
                if not in_range:
                    self._end(key, ts_us, "out_of_range")
                    changed = True
                    continue
                if size < s.end_frac * t.peak:
                    t.size = size
                    lost = t.peak - size
                    self._end(key, ts_us, "traded" if t.traded >= s.traded_frac * lost else "pulled")
                    changed = True
                    continue
            t.size = size
            if size > t.peak:
                t.peak = size
            t.last_scan_us = ts_us
            edge = t.low if side == "bid" else t.high
            t.distance_bps = abs(mid - edge) / mid * 1e4
            if t.confirmed_us < 0 and ts_us - t.first_seen_us >= s.min_age_s * 1_000_000:
                t.confirmed_us = ts_us
            if t.confirmed_us >= 0:
                changed = True
        for key, size in current.items():
            if key in self.tracks:
                continue
            side, b = key
            t = _Track(side, b, bs, ts_us, self.absorption.window_s)
            t.size = t.peak = size
            edge = t.low if side == "bid" else t.high
            t.distance_bps = abs(mid - edge) / mid * 1e4
            if s.min_age_s <= 0:
                t.confirmed_us = ts_us
                changed = True
            self.tracks[key] = t
            (self._bid_tracks if side == "bid" else self._ask_tracks).append(t)
        # The heaviest level of each confirmed wall's bin (its levels are consecutive: bins ascend with prices).
        for t in self.tracks.values():
            if t.confirmed_us >= 0:
                p, q, idx = (bp, bq, b_idx) if t.side == "bid" else (ap, aq, a_idx)
                k0 = int(idx.searchsorted(t.bin))
                k1 = int(idx.searchsorted(t.bin, "right"))
                t.level_price = float(p[k0 + int(np.argmax(q[k0:k1]))]) if k1 > k0 else math.nan
        if changed:
            self._active_dirty = True
        self._reach()

    def _drop(self, key: tuple[WallSide, int]) -> None:
        t = self.tracks.pop(key)
        (self._bid_tracks if t.side == "bid" else self._ask_tracks).remove(t)

    def _end(self, key: tuple[WallSide, int], ts_us: int, reason: str) -> None:
        t = self.tracks[key]
        self._drop(key)
        self.ended.append(t.freeze(ts_us, reason))
        self.ended_count += 1
        self._ended_view = tuple(self.ended)

    def desync(self, ts_us: int) -> None:
        """The book can no longer be trusted: every wall ends ("desync"), candidates are forgotten."""
        for key, t in list(self.tracks.items()):
            if t.confirmed_us >= 0:
                self._end(key, ts_us, "desync")
            else:
                self._drop(key)
        self._active_dirty = True
        self._reach()

    # -- trades --------------------------------------------------------------------------------------
    def on_trade(self, ts_us: int, price: float, amount: float, is_buy: bool) -> AbsorptionSignal | None:
        """Count a trade against the walls it hits; returns an absorption signal when one fires. Nothing happens
        to a buy below ``ask_reach`` or a sell at or above ``bid_reach`` (the engine does not call it then)."""
        signal = None
        frac = self.absorption.frac
        bs = self.bin_size
        if is_buy:
            for t in self._ask_tracks:
                if price >= t.low:
                    t.traded += amount
                    if t.confirmed_us < 0:
                        continue
                    if price >= t.high + bs:
                        t.window.reset()
                    elif price < t.high:
                        if t.window.add(ts_us, amount, frac * t.peak):
                            signal = self._signal(t, ts_us, "bear")
                            self._absorbing.add(t)
                        if t.window.fired and t in self._absorbing:
                            self.bear_frac = max(self.bear_frac, t.window.volume / t.peak)
        else:
            for t in self._bid_tracks:
                if price < t.high:
                    t.traded += amount
                    if t.confirmed_us < 0:
                        continue
                    if price < t.low - bs:
                        t.window.reset()
                    elif price >= t.low:
                        if t.window.add(ts_us, amount, frac * t.peak):
                            signal = self._signal(t, ts_us, "bull")
                            self._absorbing.add(t)
                        if t.window.fired and t in self._absorbing:
                            self.bull_frac = max(self.bull_frac, t.window.volume / t.peak)
        return signal

    def _signal(self, t: _Track, ts_us: int, direction: Literal["bull", "bear"]) -> AbsorptionSignal:
        price = t.low if t.side == "bid" else t.high
        return AbsorptionSignal(
            ts_us, direction, price, t.low, t.high, t.size, t.peak, t.window.volume,
            self.absorption.window_s,
        )

    # -- views ---------------------------------------------------------------------------------------
    def active(self) -> tuple[Wall, ...]:
        """Confirmed walls, bids by price descending then asks ascending (nearest to the mid first)."""
        if self._active_dirty:
            walls = [t.freeze() for t in self.tracks.values() if t.confirmed_us >= 0]
            bids = sorted((w for w in walls if w.side == "bid"), key=lambda w: -w.price)
            asks = sorted((w for w in walls if w.side == "ask"), key=lambda w: w.price)
            self._active = tuple(bids + asks)
            self._active_dirty = False
        return self._active

    def recently_ended(self) -> tuple[Wall, ...]:
        """The last 32 walls that ended, oldest first."""
        return self._ended_view

    def nearest(self, side: WallSide) -> Wall | None:
        for w in self.active():
            if w.side == side:
                return w
        return None
