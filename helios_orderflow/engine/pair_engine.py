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
- Per-event work is small and does not grow with the book: a trade updates running sums; a book message is
  queued on the book (``FlowBook``), whose compiled loop applies the queued messages to sorted arrays and adds
  each message's OFI terms when anything reads the book or the flow (the timers, a snapshot, a gap,
  ``snapshot()``): trades read neither, and messages read nothing trades write, so the results are those of
  applying each message at once. Whole-book work (walls, depth imbalance, heatmap columns) runs on the timer
  grid, on copies of the sides' arrays.

``snapshot()`` returns an immutable ``PairState`` (cheap: a few microseconds) for SharedState and readers
on other threads. Closed candles (``CandleFeatures``) go to ``on_candle`` and to a bounded history.

Deferred timers (``defer_timers=True``, the live feed's choice): every pair's heatmap column and wall scan
fall due at the same grid instant, so on a live feed they all land in one socket read and the last pair's
update waits for twenty of them. With deferral, a due column or scan is only queued with the book's arrays as
of the grid point (copies of the sorted sides: a few microseconds), and ``settle()`` (which the feed calls once
the read's frames are published) computes it. The results are the same as without deferral, and ``settle()``
runs by itself before anything that could see its effect (a trade, a gap, a snapshot, a candle close, the next
timers, ``partial_candle()``). Only ``snapshot()`` taken meanwhile shows the state as of just before the
timer (the newest column and scan not yet there); the feed publishes again after settling.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from helios_orderflow.book import flow_kernel as fk
from helios_orderflow.book.flow_book import FlowBook
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
from helios_orderflow.signals.ofi import depth_imbalance, queue_imbalance, weighted_mid
from helios_orderflow.signals.volume_profile import RunningProfile, auto_profile_bin
from helios_orderflow.signals.vwap import SessionVwap
from helios_orderflow.signals.walls import WallTracker

NAN = math.nan
_NEVER = 1 << 62  # a timer that never fires
_DAY_US = 86_400_000_000
_FAST_FORWARD_US = 600_000_000  # jumps longer than this skip grid points whose results would be overwritten
_BookArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # bid prices, sizes, ask prices, sizes


def _flow_value(attr: str, doc: str) -> Any:
    """A value of the book's flow, read after the queued messages are applied (``PairEngine._sync_book``)."""
    def read(engine: PairEngine) -> Any:
        engine._sync_book()
        return getattr(engine, attr)

    return property(read, doc=doc)


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
        self._n_levels = s.flow.ofi_levels
        # The book and the per-message flow (usable-book checks, OFI) in compiled code; ``_sync_book`` reads it.
        self.book = FlowBook(self._n_levels)
        self.sync = BookSync(book=self.book)
        #: The best (bid price, bid size, ask price, ask size) of the last usable book.
        self._top = (NAN, NAN, NAN, NAN)
        # The book's flow as of the last ``_sync_book`` (read through the properties of the same names).
        self._ok = False
        self._crossed = 0
        self._ofi_last = 0.0
        self._ofi_total = 0.0
        self._ofi_multi_total = 0.0
        self.defer_timers = defer_timers
        #: Timer work left to ``settle()``, in firing order: (function, args, the book's arrays as of the timers
        #: or None); the function gets ``args`` and the arrays.
        self._deferred: list[tuple[Callable[..., None], tuple, _BookArrays | None]] = []
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
        self.last_book_ts_us = -1
        self.last_price = NAN
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
            # Queued on the book (deferred work holds the arrays of its own time); applied at the next read.
            res = self.sync.on_delta(ev)  # type: ignore[arg-type]
            if res is DeltaResult.APPLIED:
                self.last_book_ts_us = ts
                if self.walls is None:  # the first usable book fixes the market's grid: see it at once
                    self._sync_book()
            elif res is DeltaResult.GAP:
                self._sync_book()
                if self._deferred:
                    self.settle()
                self._lost_sync()
            return
        if t is BestBidOffer:
            self.bbo_events += 1
            return
        self._sync_book()
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
        book = self.book
        book.message_kind = fk.APPLY  # the buffered diffs the snapshot replays: applied, not order flow
        try:
            self.sync.on_snapshot(ev)
        finally:
            book.message_kind = fk.APPLY_COUNT
        book.flush()
        book.state[fk.OFI_BASE] = 0  # no OFI across a snapshot: the change is not order flow
        self.last_book_ts_us = ev.ts_us
        if self.sync.in_sync:
            book.mark_changed()
            self._sync_book()
        else:  # a buffered diff replayed by the snapshot broke the sequence again
            self._lost_sync()

    def _sync_book(self) -> None:
        """Apply the book's queued messages and take their flow: OFI sums, usable book, best levels (``FlowBook``;
        ``flow_kernel._book_changed`` is the per-message work). The first usable book fixes the market's grid.
        Nothing applied since the last call (by this call's flush or a reader's), nothing new: what the engine
        writes into the flow it also keeps (``_lost_sync``, ``_candle_to_book``)."""
        book = self.book
        book.flush()
        if not book.changed:
            return
        book.changed = False
        self._ofi_last, self._ofi_total, self._ofi_multi_total, ofi, ofi_multi = book.flow.tolist()
        c = self.candle
        c.ofi = ofi
        c.ofi_multi = ofi_multi
        state = book.state
        c.had_book = int(state[fk.HAD_BOOK])
        self._crossed = int(state[fk.CROSSED])
        ok = bool(state[fk.BOOK_OK])
        if ok:
            top = book.flow_top
            self._top = (float(top[0, 0]), float(top[1, 0]), float(top[2, 0]), float(top[3, 0]))
            if self.walls is None:
                self._init_market((self._top[0] + self._top[2]) / 2.0)
        self._ok = ok

    _book_ok = _flow_value("_ok", "The book is in sync, two-sided and not crossed (after the queued messages).")
    ofi_last = _flow_value("_ofi_last", "OFI at the best level of the last message (base units).")
    ofi_total = _flow_value("_ofi_total", "OFI at the best level summed since the engine started.")
    ofi_multi_total = _flow_value("_ofi_multi_total", "OFI over the best ``flow.ofi_levels`` levels summed since the "
                                  "engine started.")
    crossed = _flow_value("_crossed", "Messages that left the book crossed (best bid >= best ask).")

    def _candle_to_book(self) -> None:
        """After the candle was reset: its OFI sums and book flag are where the book's flow continues them."""
        c = self.candle
        flow = self.book.flow
        flow[fk.CANDLE_OFI] = c.ofi
        flow[fk.CANDLE_OFI_MULTI] = c.ofi_multi
        self.book.state[fk.HAD_BOOK] = c.had_book

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
        self._ok = False
        self.book.state[fk.BOOK_OK] = 0
        self.book.state[fk.OFI_BASE] = 0
        self.depth_imbalance = NAN
        if self.walls is not None:
            self.walls.desync(max(self.clock_us, 0))

    # -- timers --------------------------------------------------------------------------------------
    def _advance(self, ts: int) -> None:
        """Fire every timer due at or before ``ts`` (called before the event at ``ts`` is applied)."""
        if self._next_due < 0:
            self._start_clock(ts)
            return
        self._sync_book()
        if self._deferred:  # at most one instant's work waits
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
        self._candle_to_book()
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

    def _book_arrays(self) -> _BookArrays:
        return self.book.arrays()

    def _defer(self, fn: Callable[..., None], args: tuple, needs_book: bool) -> None:
        self._deferred.append((fn, args, self._book_arrays() if needs_book else None))

    @property
    def unsettled(self) -> bool:
        """Deferred timer work is waiting for ``settle()``."""
        return bool(self._deferred)

    def settle(self) -> None:
        """Do the deferred timer work, in the order it fell due (a no-op without deferral)."""
        jobs, self._deferred = self._deferred, []
        for fn, args, arrays in jobs:
            fn(*args, arrays)

    def _mid(self) -> float:
        return (self._top[0] + self._top[2]) / 2.0

    def _sample(self, t: int) -> None:
        hm = self.heatmap
        if hm is None:
            return
        if self._book_ok:
            mid = self._mid()
            self._last_mid = mid
            scalars = (self._top[0], self._top[2], self.cvd.total, self.ofi_total)
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
            pb, qb, pa, qa = self._top
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
        self.candle.had_book = int(self._ok)  # the book the new candle opens with (synced by _advance)
        self._candle_to_book()
        if self.on_candle is not None:
            self.on_candle(cf)

    def partial_candle(self) -> CandleFeatures | None:
        """The candle still open, with its values so far (None before any event). Not a closed candle: its
        values change until it closes."""
        self._sync_book()
        if self._deferred:
            self.settle()
        return None if self.clock_us < 0 else self._candle_features()

    # -- state ---------------------------------------------------------------------------------------
    def health(self) -> BookHealth:
        self._sync_book()
        s = self.sync
        return BookHealth(
            s.in_sync, self._book_ok, s.snapshots, s.applied, s.stale_dropped, s.gaps, s.buffer_overflows,
            self.feed_gaps, self.crossed, s.last_gap, self.last_book_ts_us, self._trade_ids.dropped,
        )

    def __getstate__(self) -> dict[str, object]:
        """What a checkpoint keeps (``recording/checkpoints.py``): everything but the heatmap's ring of columns
        (11 MB that only the page draws: its grid is kept, and a restored engine starts an empty ring on it) and
        the candle callback (a function of the process that set it)."""
        self._sync_book()
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
        self._sync_book()
        ok = self._book_ok
        if ok:
            pb, qb, pa, qa = self._top
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
