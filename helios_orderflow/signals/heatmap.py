"""The liquidity heatmap: resting size per price bin per side, sampled on a fixed event-time grid, in a ring
buffer whose size is set by the settings (not by how long the engine runs), plus traded volume per bin per
interval by taker side (trade bubbles).

Bins: bin ``b`` covers prices ``[b * bin_size, (b + 1) * bin_size)`` (``bin_index``). A column sampled at time
``t`` (a multiple of ``snapshot_interval_ms``) describes the book as it stood after every event with
``ts_us < t`` and the trades processed in the interval that ends at ``t``. Each column is anchored at the
mid's bin ``a`` and holds, with ``H = half_bins``:

- ``bids[j]``: resting bid size in bin ``a - H + j`` (j = 0..H; bids are never above the mid's bin),
- ``asks[j]``: resting ask size in bin ``a + j`` (j = 0..H),
- ``buy[j]``/``sell[j]``: taker buy/sell volume traded in bin ``a - H + j`` (j = 0..2H).

Sizes are base units, stored as float32 (a heatmap is a picture; 7 significant digits are plenty). A
column sampled while the book is out of sync has NaN resting sizes (unknown, not empty). Trades outside
the column's range are counted in ``trades_outside``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from helios_orderflow.core.settings import HeatmapSettings

_EPS = 1e-9  # bin_index: 0.3 / 0.1 is 2.9999999999999996 in floats; the price is on the grid, so round up


def bin_index(price: float, bin_size: float) -> int:
    return math.floor(price / bin_size + _EPS)


#: The tick is inferred from this many best levels per side: far from the mid, thin books keep old orders at a
#: finer grid than the pair trades at today (Gate ZKS_ETH, tick 0.000001, has bids at 0.00001063 and 0.00000001;
#: NEO_BTC, tick 0.0000001, at 0.00004802), and the most decimals over the whole book would pick that grid.
TICK_LEVELS = 20


def infer_tick(prices: list[float] | tuple[float, ...]) -> float:
    """The price tick implied by the most decimals among ``prices`` (their shortest float repr):
    ``[61837.63, 61837.6] -> 0.01``. 1.0 when every price is whole. Pass the levels nearest the mid
    (``TICK_LEVELS`` per side), not the whole book."""
    decimals = 0
    for p in prices:
        exp = Decimal(repr(p)).normalize().as_tuple().exponent
        if isinstance(exp, int) and -exp > decimals:
            decimals = -exp
    return float(Decimal(1).scaleb(-decimals))


def auto_bin_size(mid: float, tick: float, min_width: float = 0.0) -> float:
    """A whole number of ticks, {1, 2, 5} x 10^k or 2.5 x 10^k (k >= 1), nearest (in ratio) to the larger of
    1 bp of ``mid`` and ``min_width`` (quote units): mid 61700, tick 0.01 -> 5.0 (1 bp = 6.17).

    Guarantees: never a fraction of a tick, and never a fraction of a tick's multiple either (2.5 ticks would
    put 2 and 3 price levels in alternate bins, a stripe pattern on any book with every tick quoted); exactly
    one tick when the tick is at least 1 bp of the mid, whatever ``min_width`` asks for: each tick is then a
    price a trader tells apart (>= 1 bp away from the next), and a bin must not merge two of them."""
    if tick >= mid * 1e-4:
        return tick
    target = max(mid * 1e-4, min_width, tick)
    best = tick
    best_err = math.inf
    k = 0
    while True:
        base = 10.0**k
        done = False
        for m in (1.0, 2.0, 2.5, 5.0):
            if k == 0 and m == 2.5:
                continue
            cand = float(Decimal(repr(tick)) * Decimal(repr(m * base)))
            err = abs(math.log(cand / target))
            if err < best_err:
                best, best_err = cand, err
            if cand > target * 10:
                done = True
        if done:
            return best
        k += 1


def side_reach(mid: float, bid_prices: np.ndarray, ask_prices: np.ndarray, n: int) -> tuple[float, float]:
    """How far, as a fraction of ``mid``, each side must reach to hold its ``n`` best levels (all of them when
    it has fewer; 0.0 when it has none). ``bid_prices``/``ask_prices`` ascending, as the engine's arrays."""
    b = (mid - float(bid_prices[-min(n, bid_prices.size)])) / mid if bid_prices.size else 0.0
    a = (float(ask_prices[min(n, ask_prices.size) - 1]) - mid) / mid if ask_prices.size else 0.0
    return b, a


def heatmap_grid(settings: HeatmapSettings, mid: float, tick: float, reach: float) -> tuple[float, int]:
    """(bin size, half_bins) of the heatmap, fixed at the first book: mid ``mid``, tick ``tick``, and
    ``reach`` = the fraction of the mid that holds ``settings.min_levels`` levels on the side that needs more.

    The columns cover mid +/- ``range_pct`` %. A thin book's best levels can lie farther out than that (Gate
    INK_USDT's spread alone is 4.9 %): then the range widens to ``reach``, at most ``max_range_pct`` %, with at
    most ``max_bins_per_side`` bins per side (memory), and an "auto" bin grows to range / ``max_bins_per_side``
    when that is wider than 1 bp, except with a tick of 1 bp or more, where the bin stays one tick and the range
    is what ``max_bins_per_side`` ticks cover. Books that need no widening get exactly the configured range and
    bin (BTC/USDT: 5.0 USDT bins, 62 per side)."""
    base = mid * settings.range_pct / 100.0
    wide = min(max(base, reach * mid), mid * max(settings.max_range_pct, settings.range_pct) / 100.0)
    b = settings.bin_size
    if isinstance(b, str):
        bin_size = auto_bin_size(mid, tick, wide / settings.max_bins_per_side if wide > base else 0.0)
    else:
        bin_size = float(b)
    half = max(1, math.ceil(base / bin_size))
    if wide > base:
        half = max(half, min(math.ceil(wide / bin_size - _EPS), settings.max_bins_per_side))
    return bin_size, half


#: Per-column values recorded beside the bins: best bid, best ask, CVD and OFI (both summed since start) as they
#: stood when the column was sampled (NaN when unknown).
SCALARS = ("best_bid", "best_ask", "cvd", "ofi")
_NO_SCALARS = (math.nan, math.nan, math.nan, math.nan)


@dataclass(frozen=True, slots=True)
class HeatmapColumns:
    """Heatmap columns, oldest first (read-only copies; see the module docstring for the layout), and a way to
    read more of the columns published up to ``seq`` (``since``) from the engine's ring without copying it all."""

    bin_size: float
    half_bins: int
    #: Sequence number of the newest column (columns produced since start); lets a reader append only new ones.
    seq: int
    ts_us: np.ndarray  # (n,) int64
    anchor_bin: np.ndarray  # (n,) int64
    bids: np.ndarray  # (n, H+1) float32
    asks: np.ndarray  # (n, H+1) float32
    buy: np.ndarray  # (n, 2H+1) float32
    sell: np.ndarray  # (n, 2H+1) float32
    scalars: np.ndarray  # (n, 4) float64: best bid, best ask, CVD, OFI at the column (``SCALARS``)
    ring: Heatmap | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.ts_us.size)

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest column held (``seq - len + 1``)."""
        return self.seq - len(self) + 1

    def since(self, after_seq: int) -> HeatmapColumns | None:
        """Every column with a sequence number in ``(after_seq, seq]`` still in the engine's ring, oldest first
        (None when there is none). Safe from any thread while the engine writes: a column the engine overwrote
        during the copy is left out, so the result may start after ``after_seq + 1`` (compare ``first_seq``):
        the columns a slow reader lost. This is how a page reads the heatmap the engine keeps, instead of
        keeping one of its own."""
        if self.ring is None:
            keep = max(0, min(len(self), self.seq - after_seq))
            return None if keep == 0 else _tail(self, keep)
        return self.ring.read(after_seq, self.seq)

    def times_since(self, after_seq: int) -> tuple[int, np.ndarray]:
        """(number of the first column, start times) of the columns ``since(after_seq)`` would give, without
        copying their bins (a reader looking for a time range)."""
        if self.ring is None:
            keep = max(0, min(len(self), self.seq - after_seq))
            return self.seq - keep + 1, self.ts_us[len(self) - keep:]
        return self.ring.read_times(after_seq, self.seq)

    def bid_prices(self, i: int) -> np.ndarray:
        """Lower edge price of each bid bin of column ``i``."""
        a = int(self.anchor_bin[i])
        return np.arange(a - self.half_bins, a + 1) * self.bin_size

    def ask_prices(self, i: int) -> np.ndarray:
        a = int(self.anchor_bin[i])
        return np.arange(a, a + self.half_bins + 1) * self.bin_size


def _tail(cols: HeatmapColumns, n: int) -> HeatmapColumns:
    return HeatmapColumns(cols.bin_size, cols.half_bins, cols.seq, cols.ts_us[-n:], cols.anchor_bin[-n:],
                          cols.bids[-n:], cols.asks[-n:], cols.buy[-n:], cols.sell[-n:], cols.scalars[-n:], cols.ring)


class Heatmap:
    """A fixed-size ring of columns. Memory: ``capacity * (2*(H+1) + 2*(2H+1)) * 4`` bytes plus two int64
    per column, allocated once (about 11 MB for the defaults on BTCUSDT, at most about 17 MB for a thin book
    widened to ``max_bins_per_side`` = 100 bins) and written through at once: a
    long-running feed's resident memory is then flat from the first book on, instead of creeping up for
    the first ``window_s`` as the ring's pages are first written (np.zeros maps them lazily)."""

    def __init__(self, settings: HeatmapSettings, bin_size: float, half_bins: int) -> None:
        """``bin_size`` and ``half_bins`` as ``heatmap_grid`` gives them."""
        self.bin_size = bin_size
        self.half_bins = half_bins
        h = self.half_bins
        self.capacity = max(1, int(settings.window_s * 1000 // settings.snapshot_interval_ms))
        c = self.capacity
        self.ts_us = np.full(c, 0, dtype=np.int64)
        self.anchor_bin = np.full(c, 0, dtype=np.int64)
        self.bids = np.full((c, h + 1), 0.0, dtype=np.float32)
        self.asks = np.full((c, h + 1), 0.0, dtype=np.float32)
        self.buy = np.full((c, 2 * h + 1), 0.0, dtype=np.float32)
        self.sell = np.full((c, 2 * h + 1), 0.0, dtype=np.float32)
        self.scalars = np.full((c, len(SCALARS)), math.nan)
        self.seq = 0  # columns written so far
        self.trades_outside = 0
        self._trade_bins: dict[int, list[float]] = {}  # bin -> [buy, sell] in the open interval
        self._cache: tuple[int, int, HeatmapColumns] | None = None

    def add_trade(self, price: float, amount: float, is_buy: bool) -> None:
        b = math.floor(price / self.bin_size + _EPS)
        acc = self._trade_bins.get(b)
        if acc is None:
            acc = self._trade_bins[b] = [0.0, 0.0]
        acc[0 if is_buy else 1] += amount

    def take_trades(self) -> dict[int, list[float]]:
        """Hand over the trades of the open interval (for a column written later with ``sample(trades=)``)."""
        bins, self._trade_bins = self._trade_bins, {}
        return bins

    def sample(
        self, ts_us: int, mid: float,
        book: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
        trades: dict[int, list[float]] | None = None,
        scalars: tuple[float, float, float, float] = _NO_SCALARS,
    ) -> None:
        """Write the column for time ``ts_us``: ``book`` = (bid prices, bid sizes, ask prices, ask sizes) as
        arrays, or None when the book cannot be trusted (resting sizes become NaN). ``trades``: the
        interval's trades taken earlier with ``take_trades()``; by default those added since the last column.
        ``scalars``: best bid, best ask, CVD and OFI at ``ts_us`` (``SCALARS``), kept with the column.

        The column is complete before ``seq`` counts it: a reader on another thread that sees ``seq`` reads
        whole columns (``read``)."""
        h = self.half_bins
        bs = self.bin_size
        i = self.seq % self.capacity
        a = math.floor(mid / bs + _EPS)
        self.ts_us[i] = ts_us
        self.anchor_bin[i] = a
        self.scalars[i] = scalars
        if book is None:
            self.bids[i] = np.nan
            self.asks[i] = np.nan
        else:
            bp, bq, ap, aq = book
            lo = a - h
            m = bp >= lo * bs
            idx = np.floor(bp[m] / bs + _EPS).astype(np.int64) - lo
            self.bids[i] = np.bincount(idx, weights=bq[m], minlength=h + 1)[: h + 1]
            m = ap < (a + h + 1) * bs
            idx = np.floor(ap[m] / bs + _EPS).astype(np.int64) - a
            self.asks[i] = np.bincount(idx, weights=aq[m], minlength=h + 1)[: h + 1]
        buy = self.buy[i]
        sell = self.sell[i]
        buy[:] = 0.0
        sell[:] = 0.0
        if trades is None:
            trades = self._trade_bins
        if trades:
            lo = a - h
            for b, (vb, vs) in trades.items():
                j = b - lo
                if 0 <= j <= 2 * h:
                    buy[j] += vb
                    sell[j] += vs
                else:
                    self.trades_outside += 1
            trades.clear()
        self.seq += 1

    def columns(self, n: int = 1) -> HeatmapColumns | None:
        """The newest ``min(n, available)`` columns as read-only copies (cached until the next column)."""
        if self.seq == 0:
            return None
        c = self._cache
        if c is not None and c[0] == self.seq and c[1] == n:
            return c[2]
        cols = self.read(self.seq - n, self.seq, writer=True)
        assert cols is not None
        self._cache = (self.seq, n, cols)
        return cols

    def read(self, after_seq: int, upto_seq: int, *, writer: bool = False) -> HeatmapColumns | None:
        """Copies of the columns numbered ``after_seq + 1 .. upto_seq`` still in the ring (None if none).

        Any thread may call this while the engine writes: column ``m`` (numbered from 1) sits in slot
        ``(m - 1) % capacity`` and is overwritten by column ``m + capacity``, whose writing starts when ``seq``
        is ``m + capacity - 1``; so after copying, every column ``m <= seq_now - capacity + 1`` may be torn and
        is dropped, and the result starts later (``first_seq``). ``writer``: the caller is the thread that writes
        (the engine's own), so nothing can be overwritten while it copies and every column is kept."""
        c = self.capacity
        lo = max(after_seq + 1, upto_seq - c + 1, 1)
        if lo > upto_seq:
            return None
        idx = (np.arange(lo, upto_seq + 1) - 1) % c
        arrays = [arr[idx] for arr in (self.ts_us, self.anchor_bin, self.bids, self.asks, self.buy, self.sell,
                                       self.scalars)]
        # columns at the front that may have been overwritten meanwhile
        torn = 0 if writer else self.seq - c + 1 - lo + 1
        if torn > 0:
            if torn >= idx.size:
                return None
            arrays = [arr[torn:] for arr in arrays]
        for arr in arrays:
            arr.flags.writeable = False
        ts, anchor, bids, asks, buy, sell, scalars = arrays
        return HeatmapColumns(self.bin_size, self.half_bins, upto_seq, ts, anchor, bids, asks, buy, sell, scalars,
                              ring=self)

    def read_times(self, after_seq: int, upto_seq: int) -> tuple[int, np.ndarray]:
        """(number of the first column, start times) of what ``read(after_seq, upto_seq)`` would give."""
        c = self.capacity
        lo = max(after_seq + 1, upto_seq - c + 1, 1)
        if lo > upto_seq:
            return upto_seq + 1, np.zeros(0, np.int64)
        ts = self.ts_us[(np.arange(lo, upto_seq + 1) - 1) % c]
        torn = max(0, self.seq - c - lo + 2)
        return lo + torn, ts[torn:]

    def window(self) -> HeatmapColumns | None:
        """Every column in the ring, oldest first (for a dashboard drawing the whole window)."""
        return self.columns(self.capacity)
