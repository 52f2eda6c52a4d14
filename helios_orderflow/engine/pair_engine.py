"""The per-pair order-flow engine: one book, its trades, and everything a trader reads off them.

(Over the house's ~500 lines on purpose: the event handlers, the timer grid and the deferred settlement share
the engine's private state and one invariant, that whatever fires at ``t`` has seen exactly the events before
``t``; they are only checkable read together. The immutable snapshot types live in ``pair_state.py``.)

``PairEngine.on_event(event)`` takes every event type of ``events.py`` for one (exchange, symbol) in
processing (receive) order. The engine is a pure, deterministic function of that stream:

- Time is event time only. The engine's clock is the largest ``ts_us`` seen so far; it never reads the wall
  clock and uses no randomness. Timers (heatmap columns, wall scans, 1 s exhaustion buckets, candle closes,
  the session anchor) fire on fixed grids of epoch time, when the first event at or past a grid point
  arrives and before that event is applied: whatever fires at ``t`` has seen exactly the events processed
  while the clock was below ``t``. Live and replayed streams therefore give identical results.
- The book is kept by ``sequence.BookSync``. Book-based values (best prices, OFI, imbalances, weighted mid,
  walls, heatmap resting sizes) exist only while it is in sync and not crossed; otherwise they are None/NaN
  and walls end ("desync"): the engine fails closed and never invents a signal from a book it cannot trust.
- Every trade is counted once: on a venue whose trade ids increase (``trade_ids.py``), a trade whose id is
  not above the last one counted (and whose time is not later) was delivered again; it is dropped before it
  touches anything and counted in ``health.duplicate_trades``.
- Per-event work is small and does not grow with the book: a trade updates running sums; a book message
  updates, in the loop that applies it, a short sorted list of the best levels (a tracked ``BookSide``) and
  the OFI sums. Whole-book work (walls, depth imbalance, heatmap columns) runs on the timer grid, on NumPy
  arrays of the book, which a deep side updates from the prices changed since the last read instead of
  converting every level (``BookSide.arrays``: the same arrays either way).

``snapshot()`` returns an immutable ``PairState`` (cheap: a few microseconds) for SharedState and readers
on other threads. Closed candles (``CandleFeatures``) go to ``on_candle`` and to a bounded history.

Deferred timers (``defer_timers=True``, the live feed's choice): every pair's heatmap column and wall scan
fall due at the same grid instant, so on a live feed they all land in one socket read and the last pair's
update waits for twenty of them. With deferral, a due column or scan is only queued, and ``settle()``
(which the feed calls once the read's frames are published) computes it on the book as it was at the grid
point: diffs applied meanwhile note the amounts they replaced (an undo log of a few levels per diff), so
no copy of the book is taken on the hot path. The results are the same as without deferral (whole-book
arrays are sorted by price, so the order levels were inserted in does not matter), and ``settle()`` runs
by itself before anything that could see its effect (a trade, a gap, a snapshot, a candle close, the next
timers, ``partial_candle()``). Only ``snapshot()`` taken meanwhile shows the state as of just before the
timer (the newest column and scan not yet there); the feed publishes again after settling.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import numpy as np

from helios_orderflow.book.arrays import sorted_arrays
from helios_orderflow.book.sync import BookSync, DeltaResult
from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Event, FeedGap, Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.trade_ids import INCREASING_TRADE_IDS, TradeIdGuard
from helios_orderflow.engine.candles import CandleAccumulator, CandleFeatures, signal_measures, timeframe_us
from helios_orderflow.engine.pair_state import BookHealth, PairState
from helios_orderflow.signals.absorption import AbsorptionSignal
from helios_orderflow.signals.cvd import Cvd
from helios_orderflow.signals.exhaustion import BUCKET_US, ExhaustionDetector, ExhaustionSignal
from helios_orderflow.signals.heatmap import TICK_LEVELS, Heatmap, heatmap_grid, infer_tick, side_reach
from helios_orderflow.signals.ofi import depth_imbalance, ofi_levels, queue_imbalance, weighted_mid
from helios_orderflow.signals.volume_profile import RunningProfile, auto_profile_bin
from helios_orderflow.signals.vwap import SessionVwap
from helios_orderflow.signals.walls import WallTracker

NAN = math.nan
_NEVER = 1 << 62  # a timer that never fires
_DAY_US = 86_400_000_000
_FAST_FORWARD_US = 600_000_000  # jumps longer than this skip grid points whose results would be overwritten
_Undo = tuple[dict[float, float | None], dict[float, float | None]]  # per side: price -> amount before (None: absent)
_BookArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # bid prices, sizes, ask prices, sizes


class PairEngine:
    """Order-flow state of one (exchange, symbol); see the module docstring."""

    def __init__(
        self,
        exchange: str,
        symbol: str,
        settings: HeliosSettings | None = None,
        timeframe: str = "1m",
        on_candle: Callable[[CandleFeatures], None] | None = None,
        heatmap_columns: int = 4,
        defer_timers: bool = False,
        tick_size: float = 0.0,
    ) -> None:
        """``heatmap_columns``: how many of the newest heatmap columns each ``snapshot()`` carries.
        ``defer_timers``: leave whole-book timer work to ``settle()`` (see the module docstring).
        ``tick_size``: the pair's price tick where the driver knows it (the exchange's market precision, e.g.
        ccxt's ``market["precision"]["price"]``); ``heatmap.tick_size`` wins when set; with neither, the tick is
        inferred from the first book."""
        s = settings or HeliosSettings()
        self.exchange = exchange
        self.symbol = symbol
        self.settings = s
        self.timeframe = timeframe
        self.tf_us = timeframe_us(timeframe)
        self.on_candle = on_candle
        self.heatmap_columns = heatmap_columns
        self.sync = BookSync()
        self.book = self.sync.book
        self._n_levels = s.flow.ofi_levels
        # The best levels after every message and the arrays of the whole-book work, kept by the sides.
        self.book.bids.track(self._n_levels)
        self.book.asks.track(self._n_levels)
        self._prev_bids: list[tuple[float, float]] = []
        self._prev_asks: list[tuple[float, float]] = []
        self._ofi_base = False  # the previous top levels are a valid OFI baseline
        self._book_ok = False
        self._book_version = 0
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._arrays_version = -1
        self.defer_timers = defer_timers
        #: Timer work left to ``settle()``, in firing order: (function, args, needs the book); the function
        #: gets ``args`` and the book's arrays as of the timers (or None).
        self._deferred: list[tuple[Callable[..., None], tuple, bool]] = []
        #: While work that needs the book waits: what the diffs applied since changed (see ``settle``).
        self._undo: _Undo | None = None
        self._last_mid = NAN
        self.cvd = Cvd()
        self.vwap = SessionVwap()
        # Session volume profile: trades of the open candle wait in two lists (an append per trade on the hot
        # path) and join the running profile at each candle close; the profile (and its bin, when "auto") is
        # made anew at each session start, from the session's first trade.
        self._vp_settings = s.volume_profile
        self._vp: RunningProfile | None = None
        self._vp_prices: list[float] = []
        self._vp_amounts: list[float] = []
        self._prev_session_levels = (NAN, NAN, NAN)
        self.exhaustion = ExhaustionDetector(s.exhaustion)
        self.walls: WallTracker | None = None  # created with the first usable book (needs the bin size)
        self.heatmap: Heatmap | None = None
        self.tick_size = float(s.heatmap.tick_size or tick_size or NAN)
        self.bin_size = NAN
        self.clock_us = -1
        self.events = 0
        self.bbo_events = 0
        self.feed_gaps = 0
        self._trade_ids = TradeIdGuard()
        self.crossed = 0
        self.last_book_ts_us = -1
        self.last_price = NAN
        self.ofi_last = 0.0
        self.ofi_total = 0.0
        self.ofi_multi_total = 0.0
        self.depth_imbalance = NAN
        self.last_absorption: AbsorptionSignal | None = None
        self.last_exhaustion: ExhaustionSignal | None = None
        self.absorptions = 0
        self.exhaustions = 0
        self.candle = CandleAccumulator(0, NAN)
        self.last_candle: CandleFeatures | None = None
        self.history: deque[CandleFeatures] = deque(maxlen=s.flow.candle_history)
        self.candles_closed = 0
        hh, _, mm = s.flow.session_anchor_utc.partition(":")
        self._anchor_us = (int(hh) * 60 + int(mm)) * 60_000_000
        self._sample_us = s.heatmap.snapshot_interval_ms * 1000
        self._scan_us = s.walls.scan_interval_ms * 1000
        self._next_sample = self._next_scan = self._next_bucket = _NEVER
        self._candle_end = self._session_end = _NEVER
        self._next_due = -1

    # -- events --------------------------------------------------------------------------------------
    def on_event(self, ev: Event) -> None:
        """Apply one event (any type of ``events.py``) of this engine's symbol.

        A trade (most events: 62 % on the calibrated market) is handled here, without a further call of the engine,
        and shown to the walls only when it reaches a tracked bin (``WallTracker.ask_reach``/``bid_reach``)."""
        if type(ev) is Trade:
            if ev.symbol != self.symbol:
                raise HeliosError(f"event for {ev.symbol} fed to the {self.symbol} engine; route events by symbol")
            ts = ev.ts_us
            if ev.exchange in INCREASING_TRADE_IDS and not self._trade_ids.admit(ev.trade_id, ts):
                return  # delivered again: counting it twice would move CVD, VWAP and every volume after it
            if ts > self.clock_us:
                if ts >= self._next_due:
                    self._advance(ts)
                self.clock_us = ts
            self.events += 1
            if self._deferred:  # a trade sees the walls of every scan already due
                self.settle()
            p = ev.price
            q = ev.amount
            buy = ev.side == "buy"
            c = self.candle
            cvd = self.cvd
            cvd.add(q, buy)
            self.vwap.add(p, q)
            self._vp_prices.append(p)
            self._vp_amounts.append(q)
            c.add_trade(p, q, buy)
            self.exhaustion.add_trade(p, q, buy, cvd.total)
            self.last_price = p
            w = self.walls
            if w is not None and (p >= w.ask_reach if buy else p < w.bid_reach):  # the trade reaches a tracked bin
                sig = w.on_trade(self.clock_us, p, q, buy)
                if sig is not None:
                    self.last_absorption = sig
                    self.absorptions += 1
                    if sig.direction == "bull":
                        c.absorption_bull = 1
                    else:
                        c.absorption_bear = 1
            if self.heatmap is not None:
                self.heatmap.add_trade(p, q, buy)
            return
        if ev.symbol != self.symbol:
            raise HeliosError(f"event for {ev.symbol} fed to the {self.symbol} engine; route events by symbol")
        t = ev.__class__
        ts = ev.ts_us
        if ts > self.clock_us:
            if ts >= self._next_due:
                self._advance(ts)
            self.clock_us = ts
        self.events += 1
        if t is BookDelta:
            # Applying a diff reads nothing deferred work writes: it need not wait for it, it only notes
            # the amounts it replaces, so the work still sees the book of its own time.
            undo = self._undo
            if undo is not None:
                ub, ua = undo
                levels = self.book.bids.levels
                for p, _ in ev.bids:  # type: ignore[union-attr]
                    if p not in ub:
                        ub[p] = levels.get(p)
                levels = self.book.asks.levels
                for p, _ in ev.asks:  # type: ignore[union-attr]
                    if p not in ua:
                        ua[p] = levels.get(p)
            res = self.sync.on_delta(ev)  # type: ignore[arg-type]
            if res is DeltaResult.APPLIED:
                self.last_book_ts_us = ts
                self._book_changed(True)
            elif res is DeltaResult.GAP:
                if self._deferred:
                    self.settle()
                self._lost_sync()
            return
        if t is BestBidOffer:
            self.bbo_events += 1
            return
        if self._deferred:  # a snapshot or a gap sees the walls of every scan already due
            self.settle()
        if t is BookSnapshot:
            self._on_snapshot(ev)  # type: ignore[arg-type]
        elif t is FeedGap:
            self.feed_gaps += 1
            if self.sync.in_sync:
                # Data was lost: the book may be wrong even where ids cannot tell; wait for a snapshot.
                self.sync.invalidate(f"declared feed gap: {ev.reason}")  # type: ignore[union-attr]
                self._lost_sync()
        else:
            raise HeliosError(f"unknown event type {t.__name__}")

    def _on_snapshot(self, ev: BookSnapshot) -> None:
        self.sync.on_snapshot(ev)
        self._ofi_base = False  # no OFI across a snapshot: the change is not order flow
        self.last_book_ts_us = ev.ts_us
        if self.sync.in_sync:
            self._book_changed(False)
        else:  # a buffered diff replayed by the snapshot broke the sequence again
            self._lost_sync()

    def _book_changed(self, count_ofi: bool) -> None:
        self._book_version += 1
        n = self._n_levels
        bids = self.book.bids.best_levels(n)
        asks = self.book.asks.best_levels(n)
        if not bids or not asks:
            self._book_ok = False
            self._ofi_base = False
            return
        if bids[0][0] >= asks[0][0]:
            self.crossed += 1
            self._book_ok = False
            self._ofi_base = False
            return
        if not self._book_ok and self.walls is None:
            self._init_market((bids[0][0] + asks[0][0]) / 2.0)
        self._book_ok = True
        self.candle.had_book = 1
        if count_ofi and self._ofi_base:
            e1, em = ofi_levels(self._prev_bids, self._prev_asks, bids, asks, n)
            self.ofi_last = e1
            self.ofi_total += e1
            self.ofi_multi_total += em
            c = self.candle
            c.ofi += e1
            c.ofi_multi += em
        self._prev_bids = bids
        self._prev_asks = asks
        self._ofi_base = True

    def _init_market(self, mid: float) -> None:
        """Tick, bin size and the heatmap's range are fixed by the first usable book (heatmap columns must
        share one grid); on a thin book the range reaches the best ``heatmap.min_levels`` levels per side
        (``heatmap_grid``). Computed whether or not the heatmap is built: the walls' range depends on it."""
        s = self.settings
        bp, _, ap, _ = self._book_arrays()
        if math.isnan(self.tick_size):
            self.tick_size = infer_tick(bp[-TICK_LEVELS:].tolist() + ap[:TICK_LEVELS].tolist())
        reach = max(side_reach(mid, bp, ap, s.heatmap.min_levels))
        self.bin_size, half_bins = heatmap_grid(s.heatmap, mid, self.tick_size, reach)
        self.walls = WallTracker(s.walls, s.absorption, self.bin_size, half_bins * self.bin_size / mid)
        self._last_mid = mid
        if s.heatmap.enabled:
            self.heatmap = Heatmap(s.heatmap, self.bin_size, half_bins)

    def _lost_sync(self) -> None:
        self._book_ok = False
        self._ofi_base = False
        self.depth_imbalance = NAN
        if self.walls is not None:
            self.walls.desync(max(self.clock_us, 0))

    # -- timers --------------------------------------------------------------------------------------
    def _advance(self, ts: int) -> None:
        """Fire every timer due at or before ``ts`` (called before the event at ``ts`` is applied)."""
        if self._next_due < 0:
            self._start_clock(ts)
            return
        if self._deferred:  # at most one instant's work waits (one undo log)
            self.settle()
        if ts - self.clock_us > _FAST_FORWARD_US:
            self._fast_forward(ts)
        while self._next_due <= ts:
            t = self._next_due
            if self._next_sample == t:
                self._sample(t)
                self._next_sample += self._sample_us
            if self._next_scan == t:
                self._scan(t)
                self._next_scan += self._scan_us
            if self._next_bucket == t:
                for sig in self.exhaustion.close_bucket(t, self.cvd.total):
                    self.last_exhaustion = sig
                    self.exhaustions += 1
                    if sig.direction == "up":
                        self.candle.exhaustion_up = 1
                    else:
                        self.candle.exhaustion_down = 1
                self._next_bucket += BUCKET_US
            if self._candle_end == t:
                if self._deferred:
                    self.settle()
                self._close_candle(t)
                self._candle_end += self.tf_us
            if self._session_end == t:
                self.cvd.new_session(t)
                self.vwap.reset()
                self._prev_session_levels = self._session_levels()
                self._vp = None
                self._session_end += _DAY_US
            self._next_due = min(self._next_sample, self._next_scan, self._next_bucket, self._candle_end,
                                 self._session_end)

    def _start_clock(self, ts: int) -> None:
        def after(step: int) -> int:
            return (ts // step + 1) * step

        self._next_sample = after(self._sample_us) if self.settings.heatmap.enabled else _NEVER
        self._next_scan = after(self._scan_us)
        self._next_bucket = after(BUCKET_US)
        open_us = ts // self.tf_us * self.tf_us
        self.candle.reset(open_us, NAN)
        self._candle_end = open_us + self.tf_us
        start = (ts - self._anchor_us) // _DAY_US * _DAY_US + self._anchor_us
        self.cvd.new_session(start)
        self._session_end = start + _DAY_US
        self._next_due = min(self._next_sample, self._next_scan, self._next_bucket, self._candle_end,
                             self._session_end)

    def _fast_forward(self, ts: int) -> None:
        """Skip grid points whose output a long gap would overwrite anyway (candles are never skipped)."""
        if self._next_sample != _NEVER:
            cap = self.heatmap.capacity if self.heatmap is not None else 1
            first = (ts // self._sample_us - cap + 1) * self._sample_us
            self._next_sample = max(self._next_sample, first)
        self._next_scan = max(self._next_scan, (ts // self._scan_us - 1) * self._scan_us)
        if (ts - self._next_bucket) // BUCKET_US > self.exhaustion.n:
            self.exhaustion.reset(self.cvd.total)
            self._next_bucket = ts // BUCKET_US * BUCKET_US
        self._next_due = min(self._next_sample, self._next_scan, self._next_bucket, self._candle_end,
                             self._session_end)

    def _book_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays_version != self._book_version or self._arrays is None:
            bp, bq = self.book.bids.arrays()
            ap, aq = self.book.asks.arrays()
            self._arrays = (bp, bq, ap, aq)
            self._arrays_version = self._book_version
        return self._arrays

    def _defer(self, fn: Callable[..., None], args: tuple, needs_book: bool) -> None:
        self._deferred.append((fn, args, needs_book))
        if needs_book and self._undo is None:
            self._undo = ({}, {})

    @property
    def unsettled(self) -> bool:
        """Deferred timer work is waiting for ``settle()``."""
        return bool(self._deferred)

    def settle(self) -> None:
        """Do the deferred timer work, in the order it fell due (a no-op without deferral)."""
        jobs, self._deferred = self._deferred, []
        undo, self._undo = self._undo, None
        arrays: _BookArrays | None = None
        for fn, args, needs_book in jobs:
            if needs_book and arrays is None:
                arrays = self._arrays_before(undo)
            fn(*args, arrays if needs_book else None)

    def _arrays_before(self, undo: _Undo | None) -> _BookArrays:
        """The book's arrays as they were before the diffs noted in ``undo``."""
        if undo is None or not (undo[0] or undo[1]):
            return self._book_arrays()
        sides = []
        for levels, changed in ((self.book.bids.levels, undo[0]), (self.book.asks.levels, undo[1])):
            if changed:
                levels = dict(levels)
                for p, q in changed.items():
                    if q is None:
                        levels.pop(p, None)
                    else:
                        levels[p] = q
            sides.append(levels)
        return _arrays(sides[0], sides[1])

    def _mid(self) -> float:
        return (self._prev_bids[0][0] + self._prev_asks[0][0]) / 2.0

    def _sample(self, t: int) -> None:
        hm = self.heatmap
        if hm is None:
            return
        if self._book_ok:
            mid = self._mid()
            self._last_mid = mid
            scalars = (self._prev_bids[0][0], self._prev_asks[0][0], self.cvd.total, self.ofi_total)
            if self.defer_timers:
                self._defer(self._sample_column, (hm, t, mid, hm.take_trades(), scalars), True)
            else:
                hm.sample(t, mid, self._book_arrays(), None, scalars)
        elif not math.isnan(self._last_mid):
            scalars = (NAN, NAN, self.cvd.total, self.ofi_total)
            if self.defer_timers:  # columns stay in order behind any deferred one
                self._defer(self._sample_column, (hm, t, self._last_mid, hm.take_trades(), scalars), False)
            else:
                hm.sample(t, self._last_mid, None, None, scalars)

    @staticmethod
    def _sample_column(hm: Heatmap, t: int, mid: float, trades: dict[int, list[float]],
                       scalars: tuple[float, float, float, float], book: _BookArrays | None) -> None:
        hm.sample(t, mid, book, trades, scalars)

    def _scan(self, t: int) -> None:
        if not self._book_ok or self.walls is None:
            if self.defer_timers and self._deferred:
                self._defer(self._scan_book, (t, NAN), False)
            else:
                self.depth_imbalance = NAN
            return
        mid = self._mid()
        self._last_mid = mid
        if self.defer_timers:
            self._defer(self._scan_book, (t, mid), True)
        else:
            self._scan_book(t, mid, self._book_arrays())

    def _scan_book(self, t: int, mid: float, book: _BookArrays | None) -> None:
        """Depth imbalance and the wall scan at ``t`` (``book`` None: the book was unusable at ``t``)."""
        if book is None:
            self.depth_imbalance = NAN
            return
        bp, bq, ap, aq = book
        self.depth_imbalance = depth_imbalance(bp, bq, ap, aq, mid, self.settings.flow.depth_imbalance_bps)
        self.walls.scan(t, mid, bp, bq, ap, aq)  # type: ignore[union-attr]

    def _session_levels(self) -> tuple[float, float, float]:
        """(POC, VAH, VAL) of the session's trades so far (NaN before its first trade)."""
        prices, amounts = self._vp_prices, self._vp_amounts
        if prices:
            vp = self._vp
            if vp is None:
                b = self._vp_settings.bin_size
                size = auto_profile_bin(prices[0]) if isinstance(b, str) else float(b)
                vp = self._vp = RunningProfile(size, self._vp_settings.value_area_pct,
                                               self._vp_settings.value_area_step)
            vp.add_many(prices, amounts)
            self._vp_prices, self._vp_amounts = [], []
        return self._vp.levels() if self._vp is not None else (NAN, NAN, NAN)

    def _candle_features(self) -> CandleFeatures:
        """The open candle's features as of now (book values from the current book and the last scan)."""
        c = self.candle
        poc, vah, val = self._session_levels()
        ppoc, pvah, pval = self._prev_session_levels
        v, u1, l1, u2, l2 = self.vwap.bands()
        if self._book_ok:
            (pb, qb), (pa, qa) = self._prev_bids[0], self._prev_asks[0]
            mid, spread = (pb + pa) / 2.0, pa - pb
            qi, wm, di = queue_imbalance(qb, qa), weighted_mid(pb, qb, pa, qa), self.depth_imbalance
            bw = self.walls.nearest("bid") if self.walls is not None else None
            aw = self.walls.nearest("ask") if self.walls is not None else None
        else:
            mid = spread = qi = wm = di = NAN
            bw = aw = None
        return CandleFeatures(
            c.open_time_us, c.open, c.high, c.low, c.close, c.volume, c.trades, c.buy_volume, c.sell_volume,
            c.buy_volume - c.sell_volume, self.cvd.session, self.cvd.total, v, u1, l1, u2, l2, c.ofi, c.ofi_multi,
            di, qi, wm, mid, spread,
            bw.price if bw else NAN, bw.size if bw else NAN, aw.price if aw else NAN, aw.size if aw else NAN,
            c.absorption_bull, c.absorption_bear, c.exhaustion_up, c.exhaustion_down, int(self._book_ok),
            c.had_book, poc, vah, val, ppoc, pvah, pval,
            **signal_measures(self.walls, self.exhaustion, bw, aw),
        )

    def _close_candle(self, t: int) -> None:
        cf = self._candle_features()
        self.last_candle = cf
        self.history.append(cf)
        self.candles_closed += 1
        self.exhaustion.new_candle()
        if self.walls is not None:
            self.walls.new_candle()
        self.candle.reset(t, self.candle.close)
        self.candle.had_book = int(self._book_ok)  # the book the new candle opens with
        if self.on_candle is not None:
            self.on_candle(cf)

    def partial_candle(self) -> CandleFeatures | None:
        """The candle still open, with its values so far (None before any event). Not a closed candle: its
        values change until it closes."""
        if self._deferred:
            self.settle()
        return None if self.clock_us < 0 else self._candle_features()

    # -- state ---------------------------------------------------------------------------------------
    def health(self) -> BookHealth:
        s = self.sync
        return BookHealth(
            s.in_sync, self._book_ok, s.snapshots, s.applied, s.stale_dropped, s.gaps, s.buffer_overflows,
            self.feed_gaps, self.crossed, s.last_gap, self.last_book_ts_us, self._trade_ids.dropped,
        )

    def __getstate__(self) -> dict[str, object]:
        """What a checkpoint keeps (``recording/checkpoints.py``): everything but the heatmap's ring of columns
        (11 MB that only the page draws: its grid is kept, and a restored engine starts an empty ring on it) and
        the candle callback (a function of the process that set it)."""
        state = self.__dict__.copy()
        hm = state.get("heatmap")
        if isinstance(hm, Heatmap):
            state["heatmap"] = (hm.bin_size, hm.half_bins)
        state["on_candle"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        grid = state.get("heatmap")
        self.__dict__.update(state)
        if isinstance(grid, tuple):
            self.heatmap = Heatmap(self.settings.heatmap, float(grid[0]), int(grid[1]))

    def snapshot(self) -> PairState:
        """An immutable view of the engine now (safe to hand to other threads)."""
        ok = self._book_ok
        if ok:
            (pb, qb), (pa, qa) = self._prev_bids[0], self._prev_asks[0]
            mid: float | None = (pb + pa) / 2.0
            spread: float | None = pa - pb
            qi, wm = queue_imbalance(qb, qa), weighted_mid(pb, qb, pa, qa)
            di = self.depth_imbalance
        else:
            pb = qb = pa = qa = mid = spread = None  # type: ignore[assignment]
            qi = wm = di = NAN
        v, u1, l1, u2, l2 = self.vwap.bands()
        w = self.walls
        c = self.candle
        return PairState(
            self.exchange, self.symbol, self.clock_us, self.events, self.timeframe, self.tick_size, self.bin_size,
            pb, qb, pa, qa, mid, spread, None if math.isnan(self.last_price) else self.last_price,
            self.cvd.session, self.cvd.total, self.cvd.session_start_us, c.buy_volume - c.sell_volume,
            v, self.vwap.std, u1, l1, u2, l2,
            self.ofi_last, c.ofi, c.ofi_multi, self.ofi_total, self.ofi_multi_total,
            di, qi, wm,
            w.active() if (w is not None and ok) else (),
            w.recently_ended() if w is not None else (),
            self.last_absorption, self.last_exhaustion, self.absorptions, self.exhaustions,
            self.health(),
            self.heatmap.columns(self.heatmap_columns) if self.heatmap is not None else None,
            self.last_candle, self.candles_closed,
        )


def _arrays(bids: dict[float, float], asks: dict[float, float]) -> _BookArrays:
    """(bid prices, bid sizes, ask prices, ask sizes) of a book's levels, ascending by price: sums over
    them then do not depend on the order the levels were inserted in (a deferred timer's book is rebuilt)."""
    bp, bq = sorted_arrays(bids)
    ap, aq = sorted_arrays(asks)
    return bp, bq, ap, aq
