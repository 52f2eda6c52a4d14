"""What the page keeps per pair: heatmap time columns plus the series drawn beside them.

Heatmap columns (``HeatmapColumns``, anchored at the mid's bin) come in two stores:

- Live (``EngineColumns``): the engine's own ring, as the feed published it (``PairState.heatmap.since``).
  The page keeps no heatmap of its own and rebuilds nothing: a column's sequence number is the engine's, one
  history column per engine sample, and nothing is lost however slowly the page reads (within the engine's
  ``heatmap.window_s``).
- Replay (``MergedColumns``): a recording can span hours or days, more than the engine's window, so its
  samples are merged into history columns of ``column_us`` (a multiple of the engine's snapshot interval,
  aligned on epoch time) that fit ``capacity``: resting liquidity is averaged over the samples of a history
  column (bids and asks summed per bin: the book's two sides never overlap except in the mid's bin), traded
  volume per side is summed. Memory is fixed at construction: ``capacity * 3 * (2H+1) * 4`` bytes plus a
  few float64 per column (about 5 MB for 3600 columns of 125 bins, the BTCUSDT defaults).

Each column carries the best bid/ask, CVD (since start) and cumulative OFI as the engine recorded them at its
(last) sample. Candles, walls and signals are bounded deques. All methods are thread-safe: one writer (the
source's thread) and any number of readers (the web server's threads); locks are held only to copy arrays.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from helios_orderflow.signals.heatmap import HeatmapColumns

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


class MergedColumns:
    """History columns of ``column_us``, merged from engine samples as they arrive (see the module docstring):
    what a recording replay keeps, so that hours of recording fit ``capacity`` columns."""

    def __init__(self, bin_size: float, half_bins: int, column_us: int, capacity: int, *,
                 sample_us: int | None = None) -> None:
        """``sample_us``: the engine's snapshot interval, when known: a history column is then completed by
        its last sample (``ts_us + sample_us`` reaches its end) instead of by the next column's first one, so
        a live page gets each column one interval sooner."""
        self.sample_us = sample_us
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
        self.last_ts_us = -1

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self._ts, self._anchor, self._liq, self._buy, self._sell, self._scalars))

    def add_engine_columns(self, cols: HeatmapColumns) -> None:
        """Add every column of ``cols`` (engine samples, each with its best bid/ask, CVD and OFI)."""
        if cols.half_bins != self.half_bins or cols.bin_size != self.bin_size:
            return  # a different grid (cannot happen within one engine); ignore rather than corrupt
        liq = _liquidity(cols)
        for i in range(len(cols)):
            sc = cols.scalars[i]
            self.add_column(int(cols.ts_us[i]), int(cols.anchor_bin[i]), liq[i], cols.buy[i], cols.sell[i],
                            (float(sc[0]), float(sc[1]), float(sc[2]), float(sc[3])))

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
            if self.sample_us is not None and ts_us + self.sample_us >= (key + 1) * self.column_us:
                self._commit()

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

    def complete_until_us(self) -> int:
        with self._lock:
            if self._open_key is not None:
                return self._open_key * self.column_us
            if self.seq == 0:
                return -1
            return int(self._ts[(self.seq - 1) % self.capacity]) + self.column_us

    def span(self) -> tuple[int, int] | None:
        with self._lock:
            n = min(self.seq, self.capacity)
            if n == 0:
                return None
            first = (self.seq - n) % self.capacity
            last = (self.seq - 1) % self.capacity
            return int(self._ts[first]), int(self._ts[last]) + self.column_us

    def slice(self, start_us: int | None = None, end_us: int | None = None, after_seq: int = -1) -> HistorySlice:
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


def _liquidity(cols: HeatmapColumns) -> np.ndarray:
    """Resting size over bins ``anchor - H .. anchor + H`` of each column: bids and asks summed (they meet only
    in the mid's bin)."""
    h = cols.half_bins
    liq = np.zeros((len(cols), 2 * h + 1), np.float32)
    liq[:, : h + 1] += cols.bids
    liq[:, h:] += cols.asks
    return liq


class EngineColumns:
    """The live engine's own heatmap, read where it is: the columns an engine published (``PairState.heatmap``,
    whose ``since`` reads the engine's ring), one history column per engine sample. Nothing is copied until a
    page asks for a slice; a sequence number is the engine's column number, so a page resumes where it was."""

    def __init__(self, cols: HeatmapColumns, sample_us: int) -> None:
        self.bin_size = float(cols.bin_size)
        self.half_bins = int(cols.half_bins)
        self.column_us = int(sample_us)
        self.capacity = cols.ring.capacity if cols.ring is not None else len(cols)
        self._cols = cols
        self.missed_columns = 0  # never: kept for the sources' counters

    def publish(self, cols: HeatmapColumns) -> None:
        """The newest columns the engine published (the feed's latest ``PairState.heatmap``)."""
        if cols.seq > self._cols.seq and cols.bin_size == self.bin_size and cols.half_bins == self.half_bins:
            self._cols = cols

    @property
    def seq(self) -> int:
        return self._cols.seq

    @property
    def last_ts_us(self) -> int:
        return int(self._cols.ts_us[-1]) if len(self._cols) else -1

    @property
    def nbytes(self) -> int:
        return 0  # the engine's ring: no copy of its own

    def flush(self) -> None:
        pass  # engine columns are complete when published

    def complete_until_us(self) -> int:
        last = self.last_ts_us
        return -1 if last < 0 else last + self.column_us

    def _ts(self) -> tuple[int, np.ndarray]:
        """(first column number, start time of every column still in the ring), oldest first."""
        return self._cols.times_since(0)

    def span(self) -> tuple[int, int] | None:
        _, ts = self._ts()
        return None if ts.size == 0 else (int(ts[0]), int(ts[-1]) + self.column_us)

    def slice(self, start_us: int | None = None, end_us: int | None = None, after_seq: int = -1) -> HistorySlice:
        cols = self._cols
        lo = after_seq
        if start_us is not None:
            first, ts = self._ts()
            lo = max(lo, first - 1 + int(np.searchsorted(ts, start_us, side="left")))
        got = cols.since(lo)
        h = self.half_bins
        if got is not None and end_us is not None:
            keep = int(np.searchsorted(got.ts_us, end_us, side="left"))
            got = got if keep == len(got) else _first(got, keep)
        if got is None or len(got) == 0:
            w = 2 * h + 1
            empty = np.zeros(0)
            return HistorySlice(self.bin_size, h, self.column_us, after_seq, np.zeros(0, np.int64),
                                np.zeros(0, np.int64), np.zeros((0, w), np.float32), np.zeros((0, w), np.float32),
                                np.zeros((0, w), np.float32), empty, empty, empty, empty)
        sc = got.scalars
        return HistorySlice(self.bin_size, h, self.column_us, got.first_seq + len(got) - 1, got.ts_us,
                            got.anchor_bin, _liquidity(got), got.buy, got.sell,
                            sc[:, 0].copy(), sc[:, 1].copy(), sc[:, 2].copy(), sc[:, 3].copy())


def _first(cols: HeatmapColumns, n: int) -> HeatmapColumns | None:
    if n <= 0:
        return None
    return HeatmapColumns(cols.bin_size, cols.half_bins, cols.first_seq + n - 1, cols.ts_us[:n], cols.anchor_bin[:n],
                          cols.bids[:n], cols.asks[:n], cols.buy[:n], cols.sell[:n], cols.scalars[:n])


class PairHistory:
    """Bounded history of one pair for the page (see the module docstring): its heatmap columns (merged from a
    replay's samples, ``MergedColumns``, or the live engine's own, ``EngineColumns``), its candles, walls and
    signals."""

    def __init__(self, exchange: str, symbol: str, bin_size: float, half_bins: int, column_us: int,
                 capacity: int, *, sample_us: int | None = None,
                 columns: MergedColumns | EngineColumns | None = None) -> None:
        """A merged history of ``capacity`` columns of ``column_us``; or, given ``columns``, that store."""
        self.exchange = exchange
        self.symbol = symbol
        self.columns: MergedColumns | EngineColumns = columns or MergedColumns(
            bin_size, half_bins, column_us, capacity, sample_us=sample_us)
        self.bin_size = self.columns.bin_size
        self.half_bins = self.columns.half_bins
        self.column_us = self.columns.column_us
        self.capacity = self.columns.capacity
        self._lock = threading.Lock()
        self.candles: tuple[Any, ...] = ()  # CandleFeatures, oldest first (the engine bounds them)
        self.timeframe = "1m"
        self._walls_ended: deque[Any] = deque(maxlen=MAX_WALLS)
        self._walls_seen: set[tuple[str, int, float]] = set()
        self.walls_active: tuple[Any, ...] = ()
        self._signals: deque[Any] = deque(maxlen=MAX_SIGNALS)
        self.state: Any = None  # the newest PairState (engine snapshot), for the health banner

    @classmethod
    def of_engine(cls, exchange: str, symbol: str, cols: HeatmapColumns, sample_us: int) -> PairHistory:
        """The page's history of a live engine: its heatmap columns are the engine's own (``EngineColumns``)."""
        store = EngineColumns(cols, sample_us)
        return cls(exchange, symbol, store.bin_size, store.half_bins, store.column_us, store.capacity, columns=store)

    # ---- columns: the store's --------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """Sequence number of the newest complete column."""
        return self.columns.seq

    @property
    def last_ts_us(self) -> int:
        return self.columns.last_ts_us

    def add_column(self, ts_us: int, anchor_bin: int, liquidity: np.ndarray, buy: np.ndarray, sell: np.ndarray,
                   scalars: tuple[float, float, float, float]) -> None:
        """Merge one engine sample (vectors over bins ``anchor_bin - H .. anchor_bin + H``) into history."""
        assert isinstance(self.columns, MergedColumns), "a live engine's history is the engine's own"
        self.columns.add_column(ts_us, anchor_bin, liquidity, buy, sell, scalars)

    def add_engine_columns(self, cols: HeatmapColumns) -> None:
        """New engine columns: merged (replay) or published (live)."""
        if isinstance(self.columns, MergedColumns):
            self.columns.add_engine_columns(cols)
        else:
            self.columns.publish(cols)

    def flush(self) -> None:
        """Complete the open column (a recording replay has ended: nothing more will come)."""
        self.columns.flush()

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

    def complete_until_us(self) -> int:
        """Columns starting before this time (µs) will not change: the open column's start, else the end of
        the last completed one (-1 before any data)."""
        return self.columns.complete_until_us()

    def span(self) -> tuple[int, int] | None:
        """(first column start, last column end) in µs, None before the first completed column."""
        return self.columns.span()

    def slice(self, start_us: int | None = None, end_us: int | None = None, after_seq: int = -1) -> HistorySlice:
        """Completed columns with start in [start_us, end_us) and sequence number > ``after_seq``."""
        return self.columns.slice(start_us, end_us, after_seq)

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
