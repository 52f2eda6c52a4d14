"""The page's volume profile and footprint, from the traded volume the heatmap columns carry.

The page has no trade tape: each history column carries the taker buy and sell volume per heatmap bin
(``PairHistory``). That is enough for both views, on the heatmap's own price grid (bin ``b`` covers
``[b * bin_size, (b + 1) * bin_size)``, the rows the heatmap draws; not the trade-centred bins of
``signals/volume_profile.py``):

- **Footprint** (``footprint_cells``): per candle of the page's timeframe and per bin, the bid volume (taker
  sells) and ask volume (taker buys), with diagonal imbalances by Freqtrade's rule (``bid[p]`` against
  ``ask[next traded bin above]``, ``signals.footprint.diagonal_imbalances``; ratio and minimum volume from
  ``helios.footprint``). The ratio compares VOLUMES here: the columns hold no trade counts, so the
  ``imbalance_basis = "trades"`` that Freqtrade's own columns use is not available to the page.
- **Volume profile** (``profile_levels``): volume per bin, its POC and value area (``value_area_pct`` grown
  ``value_area_step`` bins at a time, ``signals.volume_profile.value_area``). The session profile is
  accumulated server side (``SessionProfiles``); the visible-range one is summed in the browser from the
  footprint cells of the candles on screen (``assets/live.js``, the same rules), so it follows zoom and pan
  without a round trip.

Time: an engine column sampled at ``t`` holds the trades of ``[t - snapshot interval, t)``, so a history column
starting at ``T`` holds those of ``[T - lag, T + column_us - lag)`` (``lag`` = the engine's snapshot interval).
A column's volume is put in the candle (and session) holding the last instant of that interval. With history
columns one snapshot interval wide (live, and recordings up to ``history_columns`` intervals long) this is
exact; with widened columns (long recordings) the last ``lag`` of a candle's trades shows in the next candle.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from helios_orderflow.signals.footprint import diagonal_imbalances
from helios_orderflow.signals.volume_profile import session_start_us, value_area

from .history import HistorySlice, PairHistory


def _column_key_us(sl: HistorySlice, lag_us: int) -> np.ndarray:
    """The instant each column's volume is dated at: the last µs of its trades' interval."""
    return sl.ts_us + sl.column_us - lag_us - 1


@dataclass(frozen=True, slots=True)
class Footprint:
    """Footprint cells, sorted by candle then bin: candle open (µs), bin index, bid and ask volume (base units,
    float64 sums of the float32 column volumes) and the two imbalance flags."""

    open_us: np.ndarray
    bin: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_imbalance: np.ndarray
    ask_imbalance: np.ndarray

    def __len__(self) -> int:
        return int(self.open_us.size)


def footprint_cells(sl: HistorySlice, tf_us: int, lag_us: int, *, imbalance_ratio: float,
                    imbalance_volume: float) -> Footprint:
    """The footprint of the columns of ``sl`` at candles of ``tf_us`` (module docstring); cells with volume."""
    h = sl.half_bins
    traded = (sl.buy > 0) | (sl.sell > 0)
    r, c = np.nonzero(traded)
    if r.size == 0 or tf_us % sl.column_us:  # a column straddling two candles has no single candle
        e = np.zeros(0, np.int64)
        z = np.zeros(0)
        f = np.zeros(0, bool)
        return Footprint(e, e, z, z, f, f)
    candle = _column_key_us(sl, lag_us)[r] // tf_us
    bins = (sl.anchor_bin[r] - h + c).astype(np.int64)
    order = np.lexsort((bins, candle))
    candle, bins = candle[order], bins[order]
    ask = sl.buy[r, c].astype(np.float64)[order]
    bid = sl.sell[r, c].astype(np.float64)[order]
    new = np.r_[True, (candle[1:] != candle[:-1]) | (bins[1:] != bins[:-1])]
    starts = np.flatnonzero(new)
    candle, bins = candle[starts], bins[starts]
    bid = np.add.reduceat(bid, starts)
    ask = np.add.reduceat(ask, starts)
    same_next = np.r_[candle[1:] == candle[:-1], False]
    bid_imb, ask_imb = diagonal_imbalances(bid, ask, bid + ask, imbalance_ratio=imbalance_ratio,
                                           imbalance_volume=imbalance_volume, same_candle_as_next=same_next)
    return Footprint(candle * tf_us, bins, bid, ask, bid_imb, ask_imb)


@dataclass(frozen=True, slots=True)
class ProfileLevels:
    """A volume profile on the heatmap grid: ``volume[i]`` in bin ``first_bin + i``; POC (bin centre), VAH
    (upper edge of the value area's top bin) and VAL (lower edge of its bottom bin), NaN without volume."""

    bin_size: float
    first_bin: int
    volume: np.ndarray
    poc: float
    vah: float
    val: float


def profile_levels(first_bin: int, volume: np.ndarray, bin_size: float, value_area_pct: float,
                   value_area_step: int) -> ProfileLevels:
    poc, lo, hi = value_area(volume, value_area_pct, value_area_step)
    if poc < 0:
        return ProfileLevels(bin_size, first_bin, volume, math.nan, math.nan, math.nan)
    return ProfileLevels(bin_size, first_bin, volume, (first_bin + poc + 0.5) * bin_size,
                         (first_bin + hi + 1) * bin_size, (first_bin + lo) * bin_size)


def _bin_volume(sl: HistorySlice, keep: np.ndarray) -> tuple[int, np.ndarray]:
    """(first bin, volume per consecutive bin) of the columns of ``sl`` where ``keep``."""
    h = sl.half_bins
    vol = (sl.buy[keep].astype(np.float64) + sl.sell[keep].astype(np.float64))
    r, c = np.nonzero(vol > 0)
    if r.size == 0:
        return 0, np.zeros(0)
    bins = sl.anchor_bin[keep][r] - h + c
    first = int(bins.min())
    return first, np.bincount(bins - first, weights=vol[r, c])


class SessionProfiles:
    """The session-so-far volume profile of each pair, accumulated from every history column once (by its
    sequence number), so it spans the whole session even after the page's bounded history dropped the
    session's first hours. It starts at the oldest column the history holds when first asked; ``since_us``
    says from when. Sessions start daily at ``session_anchor_utc`` (``helios.flow``). Thread-safe."""

    def __init__(self, lag_us: int, session_anchor_utc: str, value_area_pct: float, value_area_step: int) -> None:
        self.lag_us = lag_us
        self.anchor = session_anchor_utc
        self.pct = value_area_pct
        self.step = value_area_step
        self._lock = threading.Lock()
        #: pair -> [session start µs, seq consumed, since µs, {bin: volume}]
        self._acc: dict[str, list[Any]] = {}

    def _session(self, t_us: int) -> int:
        return int(session_start_us(np.array([t_us]), self.anchor)[0])

    def update(self, pair: str, hist: PairHistory) -> None:
        """Add the columns completed since the last call."""
        with self._lock:
            acc = self._acc.get(pair)
            sl = hist.slice(after_seq=acc[1] if acc else -1)
            if len(sl) == 0:
                return
            when = _column_key_us(sl, self.lag_us)
            sessions = session_start_us(when, self.anchor)
            for s in np.unique(sessions).tolist():
                keep = sessions == s
                if acc is None or s > acc[0]:
                    acc = [int(s), -1, int(when[keep][0]), {}]
                elif s < acc[0]:
                    continue  # an older session's column (cannot happen: columns come in time order)
                first, vol = _bin_volume(sl, keep)
                d = acc[3]
                for i in np.flatnonzero(vol).tolist():
                    d[first + i] = d.get(first + i, 0.0) + float(vol[i])
            if acc is not None:
                acc[1] = sl.seq
                self._acc[pair] = acc

    def profile(self, pair: str, hist: PairHistory) -> tuple[int, int, ProfileLevels] | None:
        """(session start µs, since µs, profile) of the newest session, after taking new columns."""
        self.update(pair, hist)
        with self._lock:
            acc = self._acc.get(pair)
            if acc is None or not acc[3]:
                return None
            d = acc[3]
            first = min(d)
            vol = np.zeros(max(d) - first + 1)
            for b, v in d.items():
                vol[b - first] = v
            return acc[0], acc[2], profile_levels(first, vol, hist.bin_size, self.pct, self.step)
