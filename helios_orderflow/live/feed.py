"""The live L2 feed: one daemon thread, its own asyncio loop, ccxt.pro watchers for N pairs.

``Feed(exchange, symbols, settings).start()`` starts the thread; Freqtrade's callbacks read
``feed.state`` (a ``SharedState``) from their own thread without ever waiting on it. Per pair the feed:

1. watches the book with ``watch_order_book(symbol, limit=book_depth)`` and turns each observation of
   ccxt's conflated book into exact level changes (``BookDiffer``: a ``BookSnapshot`` first and after every
   resync, then ``BookDelta``s);
2. watches trades (``watch_trades_for_symbols`` for all pairs at once where the exchange has it, else one
   ``watch_trades`` per pair) and the venue's best bid/offer (``watch_bids_asks``, Binance ``bookTicker``)
   where the exchange has it;
3. hands every event, in one order, to the pair's engine and, when recording, to the recorder (a
   separate thread, so disk writes never delay the network loop). The engine sees exactly the events the
   recording holds, in the same order: per-candle features computed later from the recording equal the
   ones published live, by construction;
4. handles each update where ccxt resolves it, inside ccxt's handling of the frame (a hook on the
   websocket client's ``resolve``), not when the watch loop wakes: ccxt handles every frame of a socket
   read before any loop runs, so waiting for the loops would put each pair behind all the others. A book
   update is published into SharedState at once (a new immutable ``PairSnapshot``: engine state, health,
   candle history, best bid/ask); trades and quotes are published once per pair after the frames of the
   read are handled. The watch loops still await ccxt: they carry its errors, resubscribe, and handle an
   update themselves only for an exchange that resolves something other than its live objects.

Why books are one subscription per pair, not ``watch_order_book_for_symbols``: in ccxt's Binance client a
sequence gap in one symbol of a multi-symbol book subscription re-subscribes the whole group, which
re-fetches a REST snapshot for every symbol in it (rate-limited: seconds for 20 pairs), so one bad pair
would stall the others; and ccxt's multi-symbol future resolves for one symbol only, so an update of
another symbol arriving meanwhile would wait for that symbol's next update. Trades and best bid/offer
have no sequence state, so the multi-symbol watchers are used for them, and after every wake-up the feed
reads every pair's new trades and quotes from ccxt's caches (``exchange.trades``, ``exchange.bidsasks``),
so none waits for its pair's next message.

Failures: every watch loop catches everything but cancellation, counts it in the pair's health (gap,
reconnect or error), emits a ``FeedGap`` event (recorded too, so the recording says where it is
incomplete), waits with exponential backoff and jitter (``FeedSettings.backoff_*``) and calls ccxt again,
which resubscribes and re-snapshots. A pair's failures only delay that pair's loop. No exception leaves
the thread. ``stop()`` returns within ``stop_timeout_s`` (<= 5 s); ``start()`` is idempotent; the thread is
a daemon. A Feed cannot be pickled (hyperopt pickles strategies): keep it outside pickled state.

Local receive timestamps (``local_ts_us``) are wall-clock microseconds made non-decreasing across the
whole feed (a clock step back is held flat), as recordings require.

Where the parts live: ``Feed`` (this module) is the control surface any thread uses; ``runner.Runner`` is one
run of the thread (loop, ccxt client, watch loops); ``publish.py`` takes every event to the engine, the
recorder and SharedState; ``ccxt_edge.py`` holds every ccxt internal Helios touches; the recorder thread is
``recording/recorder.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import ConfigError, describe
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.timeframes import timeframe_us
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.live.ccxt_edge import (
    exchange_class,
)
from helios_orderflow.live.malloc import pin_mmap_threshold
from helios_orderflow.live.publish import FeedStats, Pair
from helios_orderflow.live.runner import Runner
from helios_orderflow.live.state import SharedState
from helios_orderflow.live.trade_tape import TradeTape
from helios_orderflow.live.warmup import warm_engine
from helios_orderflow.recording.checkpoints import fingerprint
from helios_orderflow.recording.recorder import Recorder
from helios_orderflow.recording.store import RemotePath, location

log = logging.getLogger(__name__)


EngineFactory = Callable[[str, str], PairEngine]


def default_engine_factory(settings: HeliosSettings, timeframe: str = "1m") -> EngineFactory:
    """``PairEngine(exchange, symbol, settings, timeframe)`` for every pair, with its timers deferred: the
    feed settles them once the frames at hand are published (see ``_settle_soon``)."""
    def make(exchange: str, symbol: str) -> PairEngine:
        return PairEngine(exchange, symbol, settings, timeframe=timeframe, defer_timers=True)

    return make


class Feed:
    """The live feed for ``symbols`` (unified) on ccxt.pro exchange ``exchange`` (ccxt id).

    - ``settings``: HeliosSettings (``feed``, ``health``, ``recording`` sections and the engine's).
    - ``ccxt_config``: merged into the ccxt client's constructor config (e.g. ``{"urls": {...}}`` to point
      it at the local exchange, ``{"options": {"defaultType": "swap"}}``).
    - ``record_to``: a recording directory; every event is also written there (None: no recording).
    - ``engine``: True for ``engine.PairEngine`` per pair, False for none (state then carries health and
      best bid/ask only), or a factory ``(exchange, symbol) -> engine``; ``timeframe``: the default
      engine's candle length (Freqtrade's timeframe, "1m").
    - ``clock``: monotonic seconds for health times; SharedState reads ages with the same clock.
    - ``on_exchange``: called with the ccxt client on the feed thread right after it is created (for
      instrumentation in benchmarks and tests).
    - ``keep_trades_us``: > 0 keeps each pair's trades of that long (exchange time) in a ``TradeTape`` in
      candles of ``timeframe`` (``trade_tape``), for Freqtrade's order-flow columns; 0 keeps none.
    """

    def __init__(
        self,
        exchange: str,
        symbols: Sequence[str],
        settings: HeliosSettings | None = None,
        *,
        ccxt_config: Mapping[str, Any] | None = None,
        record_to: str | Path | RemotePath | None = None,
        engine: bool | EngineFactory = True,
        timeframe: str = "1m",
        state: SharedState | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_exchange: Callable[[Any], None] | None = None,
        keep_trades_us: int = 0,
    ) -> None:
        symbols = list(dict.fromkeys(symbols))
        if not symbols:
            raise ConfigError("the feed needs at least one pair; name them, e.g. --pairs BTC/USDT ETH/USDT")
        self.exchange_id = exchange
        self.symbols = tuple(symbols)
        self.settings = settings or HeliosSettings()
        self.ccxt_config = dict(ccxt_config or {})
        # A folder, or an object store's (``s3://bucket/prefix``, recording/store.py).
        self.record_to = (location(record_to, endpoint_url=self.settings.recording.endpoint_url)
                          if record_to is not None else None)
        self.clock = clock
        self.on_exchange = on_exchange
        exchange_class(exchange)  # fail early, on the caller's thread, with a clear message
        self.state = state or SharedState(exchange, self.symbols, self.settings.health, clock)
        if self.state.symbols != self.symbols:
            raise ConfigError(f"the shared state carries {self.state.symbols}, the feed {self.symbols}")
        if engine is True:
            factory: EngineFactory | None = default_engine_factory(self.settings, timeframe)
        elif engine is False:
            factory = None
        else:
            factory = engine
        self._factory = factory
        # checkpoints and warm starts need the default engine (a custom factory's engine may be anything)
        self._checkpoints = engine is True and self.settings.recording.checkpoint_every_s > 0
        self._warmed = not self._checkpoints
        self._timeframe = timeframe
        self._keep_trades_us = keep_trades_us
        self._pairs = {s: self._make_pair(s) for s in self.symbols}
        self._followed: set[str] = set()  # every pair a started feed has followed (recorded) in this process
        self._left_at_us: dict[str, int] = {}  # see ``Runner.left_at_us``
        self.stats = FeedStats(by_symbol=dict.fromkeys(self.symbols, 0))
        self.recorder: Recorder | None = None
        self._lock = threading.Lock()
        self._runner: Runner | None = None

    def _warm_up(self) -> None:
        """Before the first start: each pair's engine continues its recorded session where there is a checkpoint
        (``warmup.py``); the others start fresh, as they would without a recording."""
        for p in self._pairs.values():
            self._warm_pair(p)

    def _warm_pair(self, p: Pair) -> None:
        """``p``'s engine continues the pair's recorded session where a usable checkpoint is (at the first start,
        and for a pair that joins later: one that left this process's feed continues from the checkpoint written
        as it left); otherwise it starts fresh."""
        assert self.record_to is not None
        engine = p.engine
        if engine is None or engine.events:
            return
        min_clock_us = self._left_at_us.get(p.symbol, 0)
        if p.symbol in self._followed and not min_clock_us:
            # followed earlier in this process and left without a checkpoint (an empty or failed engine): its
            # last events may be in the open segment, out of a replay's reach
            log.info("helios: %s starts fresh (it left without a checkpoint)", p.symbol)
            return
        t0 = time.monotonic()
        try:
            warm = warm_engine(self.record_to, self.exchange_id, p.symbol, self.settings, self._timeframe,
                               min_clock_us)
        except Exception as exc:  # a bad checkpoint must not stop the bot: the pair starts fresh
            log.warning("helios: %s could not continue its recorded session (%s); it starts fresh", p.symbol,
                        describe(exc))
            return
        if warm.engine is None:
            log.info("helios: %s starts fresh (%s in %s)", p.symbol, warm.why, self.record_to)
            return
        p.engine = warm.engine
        p.history = tuple(warm.engine.history)
        p.candles_seen = warm.engine.candles_closed
        p.warmed = True
        log.info("helios: %s continues its recorded session (%s; %.1f s)", p.symbol, warm.why,
                 time.monotonic() - t0)

    def _make_pair(self, symbol: str) -> Pair:
        factory = self._factory
        p = Pair(self.exchange_id, symbol, self.settings.feed.book_depth,
                 factory(self.exchange_id, symbol) if factory else None, self.clock)
        if self._keep_trades_us > 0:
            p.trade_tape = TradeTape(self._keep_trades_us, timeframe_us(self._timeframe))
        return p

    # ---- control (any thread) ------------------------------------------------------------------------------

    def set_pairs(self, symbols: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Follow exactly ``symbols`` from now on; returns (joined, left) without waiting on the feed thread.

        Pairs that joined get their books and trades (and recording), and an engine that continues the pair's
        recorded session where the recording has a usable checkpoint (for a pair that left this feed and comes
        back, the one written as it left), with the time it was away declared as a gap; otherwise a fresh one.
        That checkpoint is read here, in the caller's thread (``warmup.py``: milliseconds for a checkpoint, plus
        the replay of any events recorded after it). Pairs that left have
        their watch tasks cancelled, their subscriptions ended where the venue's ccxt client can, a
        ``FeedGap`` recorded ("left the feed's pairs") and their state dropped (``state.get`` gives None).
        No other pair is disturbed: its subscriptions, book and engine go on as they were (no resync, no gap).
        Any thread may call this (Freqtrade's ``bot_loop_start`` does, when the whitelist changes)."""
        wanted = tuple(dict.fromkeys(symbols))
        if not wanted:
            raise ConfigError("the feed needs at least one pair; an empty whitelist would leave it nothing to do")
        with self._lock:
            left = [s for s in self.symbols if s not in wanted]
            joined = {s: self._make_pair(s) for s in wanted if s not in self.symbols}
            if not left and not joined:
                return (), ()
            if self._followed and self._checkpoints and self.recorder is not None:  # started, recording
                for p in joined.values():  # here, not on the feed thread: reading a recording takes a while
                    self._warm_pair(p)
                self._followed.update(joined)
            self.symbols = wanted
            runner = self._runner
            if runner is not None and runner.thread.is_alive():
                for _ in range(200):  # a thread started a moment ago sets its loop before it touches a pair
                    if runner.loop is not None:
                        break
                    time.sleep(0.005)
            loop = runner.loop if runner is not None and runner.thread.is_alive() else None
            if loop is not None and runner is not None:
                # the feed thread owns the pairs: the change is made there, between two frames
                loop.call_soon_threadsafe(runner.change_pairs, joined, left)
            else:
                for s in left:
                    self._pairs.pop(s, None)
                    self.state.remove(s)
                for s, p in joined.items():
                    self._pairs[s] = p
                    self.stats.by_symbol.setdefault(s, 0)
                    self.state.add(s)
        log.info("helios feed on %s: %s", self.exchange_id, "; ".join(
            part for part in (f"pairs joined: {', '.join(joined)}" if joined else "",
                              f"pairs left: {', '.join(left)}" if left else "") if part))
        return tuple(joined), tuple(left)

    @property
    def running(self) -> bool:
        runner = self._runner
        return runner is not None and runner.thread.is_alive()

    def start(self) -> None:
        """Start the thread; a no-op while it runs (safe to call from every ``bot_start``)."""
        with self._lock:
            if self._runner is not None and self._runner.thread.is_alive():
                return
            pin_mmap_threshold(self.settings.feed.malloc_mmap_threshold_kib)
            if self.record_to is not None and (self.recorder is None or self.recorder.closed):
                self.recorder = Recorder(self.record_to, self.settings)
            if self.recorder is not None and not self._warmed:
                self._warmed = True
                self._warm_up()
            self._followed.update(self._pairs)
            self._runner = Runner(self.exchange_id, self.settings.feed, self._pairs, self.state, self.stats,
                                  self.recorder, self.clock, self.ccxt_config, self.on_exchange)
            if self.recorder is not None and self._checkpoints:
                self._runner.checkpoint_every_us = int(self.settings.recording.checkpoint_every_s * 1e6)
                self._runner.fingerprint = fingerprint(self.settings, self._timeframe)
                self._runner.left_at_us = self._left_at_us
            self._runner.thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the thread and close the recording (flushed); returns within ``timeout_s`` (default
        ``settings.feed.stop_timeout_s``, at most 5 s) even if the network hangs. Idempotent."""
        limit = min(5.0, timeout_s if timeout_s is not None else self.settings.feed.stop_timeout_s)
        deadline = time.monotonic() + limit
        with self._lock:
            runner, self._runner = self._runner, None
            recorder = self.recorder if self.recorder is not None and not self.recorder.closed else None
        if runner is not None:
            runner.request_stop()
            # Leave the recorder a second of the budget to write what is still queued.
            reserve = 1.0 if recorder is not None else 0.0
            runner.thread.join(max(0.1, deadline - reserve - time.monotonic()))
            if runner.thread.is_alive():
                log.warning("feed thread did not stop within %.1f s; it is a daemon and dies with the process", limit)
        if recorder is not None:
            recorder.close(deadline - time.monotonic())

    def __enter__(self) -> Feed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __reduce__(self) -> Any:
        raise TypeError(
            "a helios Feed holds a live thread and network connections and cannot be pickled (hyperopt and "
            "multiprocessing pickle strategies): keep the Feed outside the pickled state, e.g. in a module-level "
            "registry, or drop it in the strategy's __getstate__"
        )

    def trade_tape(self, symbol: str) -> TradeTape | None:
        """The pair's recent trades (any thread, never waits); None when the feed keeps none or for a pair it
        does not carry."""
        p = self._pairs.get(symbol)
        return p.trade_tape if p is not None else None

    def wait_recording(self, timeout_s: float | None = None) -> bool:
        """After ``stop()``: wait until the recording is completely on disk (``stop`` gives the recorder only
        what is left of its 5 s budget, then lets it finish in the background). True when done."""
        rec = self.recorder
        if rec is None:
            return True
        rec.thread.join(timeout_s)
        return not rec.thread.is_alive()

    def recording_stats(self) -> tuple[int, int]:
        """(events written, bytes written) of the current or last recording, (0, 0) when not recording."""
        rec = self.recorder
        return (rec.events_written, rec.bytes_written) if rec is not None else (0, 0)


__all__ = ["EngineFactory", "Feed", "FeedStats", "default_engine_factory"]
