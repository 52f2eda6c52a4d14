"""What the page keeps per pair: a bounded ring of heatmap time columns plus the series drawn beside them.

A source (recording replay or live SharedState) feeds engine heatmap columns (``HeatmapColumns``, anchored
at the mid's bin) into ``PairHistory.add_column``. Columns are merged into history columns of
``column_us`` (a multiple of the engine's snapshot interval, aligned on epoch time): resting liquidity is
averaged over the samples of a history column (bids and asks summed per bin: the book's two sides never
overlap except in the mid's bin), traded volume per side is summed. Each history column also records the
best bid/ask, CVD (since start) and cumulative OFI at its last sample.

Memory is fixed at construction: ``capacity * 3 * (2H+1) * 4`` bytes plus a few float64 per column
(about 5 MB for 3600 columns of 125 bins, the BTCUSDT defaults). Candles, walls and signals are bounded
deques. All methods are thread-safe: one writer (the source's thread) and any number of readers (the
web server's threads) share a lock held only to copy arrays.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Ended walls and signals kept per pair for drawing history.
MAX_WALLS = 2000
MAX_SIGNALS = 2000


@dataclass(frozen=True, slots=True)
class HistorySlice:
    """Copies of the history columns in a time range, oldest first (see ``PairHistory.slice``)."""

    bin_size: float
    half_bins: int
    column_us: int
    #: Sequence number of the newest column in this slice (columns completed since start).
    seq: int
    ts_us: np.ndarray  # (n,) int64, column start
    anchor_bin: np.ndarray  # (n,) int64
    liquidity: np.ndarray  # (n, 2H+1) float32, bins anchor-H .. anchor+H, NaN where unknown
    buy: np.ndarray  # (n, 2H+1) float32, taker buy volume
    sell: np.ndarray  # (n, 2H+1) float32
    best_bid: np.ndarray  # (n,) float64 (NaN when unknown)
    best_ask: np.ndarray
    cvd: np.ndarray  # (n,) float64, CVD since start
    ofi: np.ndarray  # (n,) float64, OFI at the best level summed since start

    def __len__(self) -> int:
        return int(self.ts_us.size)


class PairHistory:
    """Bounded history of one pair for the page (see the module docstring)."""

    def __init__(self, exchange: str, symbol: str, bin_size: float, half_bins: int, column_us: int,
                 capacity: int) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.bin_size = float(bin_size)
        self.half_bins = int(half_bins)
        self.column_us = int(column_us)
        self.capacity = int(capacity)
        w = 2 * self.half_bins + 1
        c = self.capacity
        self._ts = np.zeros(c, np.int64)
        self._anchor = np.zeros(c, np.int64)
        self._liq = np.zeros((c, w), np.float32)
        self._buy = np.zeros((c, w), np.float32)
        self._sell = np.zeros((c, w), np.float32)
        self._scalars = np.full((c, 4), np.nan)  # best_bid, best_ask, cvd, ofi
        self.seq = 0  # completed history columns
        self._lock = threading.Lock()
        # The history column being filled.
        self._open_key: int | None = None
        self._open_anchor = 0
        self._open_liq = np.zeros(w, np.float64)
        self._open_n = np.zeros(w, np.int32)
        self._open_buy = np.zeros(w, np.float64)
        self._open_sell = np.zeros(w, np.float64)
        self._open_scalars = (math.nan, math.nan, math.nan, math.nan)
        self.candles: tuple[Any, ...] = ()  # CandleFeatures, oldest first (the engine bounds them)
        self.timeframe = "1m"
        self._walls_ended: deque[Any] = deque(maxlen=MAX_WALLS)
        self._walls_seen: set[tuple[str, int, float]] = set()
        self.walls_active: tuple[Any, ...] = ()
        self._signals: deque[Any] = deque(maxlen=MAX_SIGNALS)
        self.state: Any = None  # the newest PairState (engine snapshot), for the health banner
        self.last_ts_us = -1

    # ---- writer -------------------------------------------------------------------------------------

    def add_engine_column(self, cols: Any, i: int, scalars: tuple[float, float, float, float]) -> None:
        """Add column ``i`` of a ``HeatmapColumns`` with (best_bid, best_ask, cvd, ofi_total) at its time."""
        h = self.half_bins
        if cols.half_bins != h or cols.bin_size != self.bin_size:
            return  # a different grid (cannot happen within one engine); ignore rather than corrupt
        liq = np.zeros(2 * h + 1, np.float32)
        liq[: h + 1] += cols.bids[i]
        liq[h:] += cols.asks[i]
        self.add_column(int(cols.ts_us[i]), int(cols.anchor_bin[i]), liq, cols.buy[i], cols.sell[i], scalars)

    def add_column(self, ts_us: int, anchor_bin: int, liquidity: np.ndarray, buy: np.ndarray, sell: np.ndarray,
                   scalars: tuple[float, float, float, float]) -> None:
        """Merge one engine sample (vectors over bins ``anchor_bin - H .. anchor_bin + H``) into history."""
        key = ts_us // self.column_us
        with self._lock:
            if self._open_key is not None and key != self._open_key:
                self._commit()
            if self._open_key is None:
                self._open_key = key
                self._open_anchor = anchor_bin
            d = anchor_bin - self._open_anchor
            w = 2 * self.half_bins + 1
            lo, hi = max(0, d), min(w, w + d)  # destination range in the open column
            if lo < hi:
                src = slice(lo - d, hi - d)
                v = liquidity[src]
                ok = ~np.isnan(v)
                self._open_liq[lo:hi][ok] += v[ok]
                self._open_n[lo:hi][ok] += 1
                self._open_buy[lo:hi] += buy[src]
                self._open_sell[lo:hi] += sell[src]
            self._open_scalars = scalars
            self.last_ts_us = max(self.last_ts_us, ts_us)

    def _commit(self) -> None:
        i = self.seq % self.capacity
        self._ts[i] = self._open_key * self.column_us  # type: ignore[operator]
        self._anchor[i] = self._open_anchor
        n = self._open_n
        with np.errstate(invalid="ignore", divide="ignore"):
            self._liq[i] = np.where(n > 0, self._open_liq / np.maximum(n, 1), np.nan)
        self._buy[i] = self._open_buy
        self._sell[i] = self._open_sell
        self._scalars[i] = self._open_scalars
        self.seq += 1
        self._open_key = None
        self._open_liq[:] = 0.0
        self._open_n[:] = 0
        self._open_buy[:] = 0.0
        self._open_sell[:] = 0.0

    def flush(self) -> None:
        """Complete the open column (a recording replay has ended: nothing more will come)."""
        with self._lock:
            if self._open_key is not None:
                self._commit()

    def set_state(self, state: Any, candles: Sequence[Any], timeframe: str) -> None:
        """The newest engine snapshot (``PairState``) and its closed candles; collects walls and signals."""
        with self._lock:
            self.state = state
            self.candles = tuple(candles)
            self.timeframe = timeframe
            if state is None:
                return
            self.walls_active = tuple(state.walls)
            for w in state.walls_ended:
                key = (w.side, w.first_seen_us, w.low)
                if key not in self._walls_seen:
                    if len(self._walls_seen) >= 4 * MAX_WALLS:
                        self._walls_seen = {(x.side, x.first_seen_us, x.low) for x in self._walls_ended}
                    self._walls_seen.add(key)
                    self._walls_ended.append(w)
            for sig in (state.absorption, state.exhaustion):
                if sig is not None and not any(s is sig or s == sig for s in list(self._signals)[-4:]):
                    self._signals.append(sig)

    # ---- readers ------------------------------------------------------------------------------------

    def span(self) -> tuple[int, int] | None:
        """(first column start, last column end) in µs, None before the first completed column."""
        with self._lock:
            n = min(self.seq, self.capacity)
            if n == 0:
                return None
            first = (self.seq - n) % self.capacity
            last = (self.seq - 1) % self.capacity
            return int(self._ts[first]), int(self._ts[last]) + self.column_us

    def slice(self, start_us: int | None = None, end_us: int | None = None, after_seq: int = -1) -> HistorySlice:
        """Completed columns with start in [start_us, end_us) and sequence number > ``after_seq``."""
        with self._lock:
            n = min(self.seq, self.capacity)
            first_seq = self.seq - n
            seqs = np.arange(max(first_seq, after_seq + 1), self.seq)
            idx = seqs % self.capacity
            ts = self._ts[idx]
            m = np.ones(idx.size, bool)
            if start_us is not None:
                m &= ts >= start_us
            if end_us is not None:
                m &= ts < end_us
            idx = idx[m]
            sc = self._scalars[idx]
            out = HistorySlice(
                self.bin_size, self.half_bins, self.column_us, int(seqs[m][-1]) if m.any() else after_seq,
                self._ts[idx], self._anchor[idx], self._liq[idx], self._buy[idx], self._sell[idx],
                sc[:, 0].copy(), sc[:, 1].copy(), sc[:, 2].copy(), sc[:, 3].copy(),
            )
        return out

    def walls(self, start_us: int, end_us: int) -> list[Any]:
        """Walls (``walls.Wall``) alive at some time in [start_us, end_us): ended ones, then active ones."""
        with self._lock:
            ended = [w for w in self._walls_ended if w.first_seen_us < end_us and w.ended_us >= start_us]
            active = [w for w in self.walls_active if w.first_seen_us < end_us]
        return ended + active

    def signals(self, start_us: int, end_us: int) -> list[Any]:
        """Absorption and exhaustion signals stamped in [start_us, end_us), oldest first."""
        with self._lock:
            return [s for s in self._signals if start_us <= s.ts_us < end_us]
