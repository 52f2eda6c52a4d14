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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from helios_orderflow.book.diff import BookDiffer
from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookSnapshot, Event, FeedGap, Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.trade_ids import TradeIdGuard, has_increasing_trade_ids
from helios_orderflow.live.backoff import Backoff
from helios_orderflow.live.health import HealthTracker
from helios_orderflow.live.malloc import pin_mmap_threshold
from helios_orderflow.live.state import CandleHistory, PairSnapshot, SharedState

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What the feed needs from a per-pair engine (``engine.PairEngine``)."""

    def on_event(self, event: Event) -> Any: ...

    def snapshot(self) -> Any: ...


EngineFactory = Callable[[str, str], Engine]


def default_engine_factory(settings: HeliosSettings, timeframe: str = "1m") -> EngineFactory:
    """``PairEngine(exchange, symbol, settings, timeframe)`` for every pair, with its timers deferred: the
    feed settles them once the frames at hand are published (see ``_settle_soon``)."""
    from helios_orderflow.engine.pair_engine import PairEngine

    def make(exchange: str, symbol: str) -> Engine:
        return PairEngine(exchange, symbol, settings, timeframe=timeframe, defer_timers=True)

    return make


def error_kind(exc: BaseException) -> str:
    """``"gap"`` for a broken venue sequence, ``"reconnect"`` for transient trouble (network, REST 429/5xx),
    else ``"error"``."""
    import ccxt

    if isinstance(exc, ccxt.InvalidNonce):  # ChecksumError too: ccxt's Binance gap
        return "gap"
    # OperationFailed is ccxt's "transient, retrying may work": network errors, REST 429 and 5xx answers.
    if isinstance(exc, (ccxt.OperationFailed, ConnectionError, TimeoutError, OSError)):
        return "reconnect"
    return "error"


def _unsupported(exc: BaseException) -> bool:
    import ccxt

    return isinstance(exc, (ccxt.NotSupported, ccxt.BadRequest, ccxt.BadSymbol))


def describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class FeedStats:
    """Totals since the Feed was created (read from any thread; plain ints)."""

    events: int = 0
    book_snapshots: int = 0
    book_deltas: int = 0
    trades: int = 0
    bbo: int = 0
    gaps: int = 0
    engine_errors: int = 0
    publications: int = 0
    recorder_errors: int = 0
    duplicate_trades: int = 0  # trades delivered again and dropped (see ``trade_ids.py``)
    by_symbol: dict[str, int] = field(default_factory=dict)


class _Pair:
    """Everything the feed thread keeps for one pair."""

    __slots__ = ("books_handled", "differ", "candles_seen", "dup_logged_mono_s", "engine", "engine_broken", "health",
                 "history", "last_bbo", "last_trade", "local_ts_us", "seq", "symbol", "trade_ids")

    def __init__(self, exchange: str, symbol: str, depth: int, engine: Engine | None,
                 clock: Callable[[], float], history_len: int) -> None:
        self.symbol = symbol
        self.differ = BookDiffer(exchange, symbol, depth)
        self.books_handled = 0  # book observations handled (by the resolve hook or the book loop)
        self.health = HealthTracker(exchange, symbol, clock)
        self.engine = engine
        self.engine_broken = False
        self.history = CandleHistory(history_len)
        self.candles_seen = 0  # the engine's candles_closed already in ``history``
        self.last_trade: Any = None  # the newest ccxt trade dict already emitted (identity)
        self.last_bbo: Any = None  # the newest ccxt bid/ask dict already emitted (identity)
        #: Second line of defence against a trade delivered twice (None where the venue's ids do not increase).
        self.trade_ids = TradeIdGuard() if has_increasing_trade_ids(exchange) else None
        self.dup_logged_mono_s = -1e18
        self.local_ts_us = 0
        self.seq = 0


class _Recorder:
    """The recorder on its own thread: events arrive through a queue, in the feed's order.

    Parquet writes (every ``flush_interval_s``) take tens of milliseconds; on the feed's loop they would
    delay every pair. ``events_written``/``bytes_written`` mirror the writer's counters.
    """

    _STOP = object()
    POLL_S = 0.1

    def __init__(self, root: Path, settings: HeliosSettings) -> None:
        from helios_orderflow.recording.writer import RecordingWriter

        self.writer = RecordingWriter(root, settings.recording, flush_by_time=True)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: str | None = None
        self.dropped = 0
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="helios-recorder", daemon=True)
        self.thread.start()

    @property
    def events_written(self) -> int:
        return self.writer.events_written

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    def put(self, event: Event) -> None:
        self.queue.put(event)

    def close(self, timeout_s: float) -> None:
        """Write what is queued, close the recording; wait at most ``timeout_s``. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.queue.put(self._STOP)
        self.thread.join(max(0.0, timeout_s))
        if self.thread.is_alive():
            log.warning("recorder did not finish writing within %.1f s; the last events may be lost", timeout_s)

    def _run(self) -> None:
        writer = self.writer
        q = self.queue
        stopping = False
        try:
            while not stopping:
                # Wake a few times a second and write what has queued: waking for every event would make
                # this thread and the feed thread hand the GIL back and forth hundreds of times a second.
                time.sleep(self.POLL_S)
                while True:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is self._STOP:
                        stopping = True
                        break
                    if self.error is None:
                        self._guard(writer.write, item)
                    else:
                        self.dropped += 1
                self._guard(writer.flush_if_due)
        finally:
            self._guard(writer.close)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a full disk must not take the feed down; say it once
            if self.error is None:
                self.error = describe(exc)
                log.error("recording to %s failed, recording stops (the feed goes on): %s", self.writer.root,
                          self.error)
            self.dropped += 1


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
    """

    def __init__(
        self,
        exchange: str,
        symbols: Sequence[str],
        settings: HeliosSettings | None = None,
        *,
        ccxt_config: Mapping[str, Any] | None = None,
        record_to: str | Path | None = None,
        engine: bool | EngineFactory = True,
        timeframe: str = "1m",
        state: SharedState | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_exchange: Callable[[Any], None] | None = None,
    ) -> None:
        symbols = list(dict.fromkeys(symbols))
        if not symbols:
            raise ConfigError("the feed needs at least one pair; name them, e.g. --pairs BTC/USDT ETH/USDT")
        self.exchange_id = exchange
        self.symbols = tuple(symbols)
        self.settings = settings or HeliosSettings()
        self.ccxt_config = dict(ccxt_config or {})
        self.record_to = Path(record_to) if record_to is not None else None
        self.clock = clock
        self.on_exchange = on_exchange
        _exchange_class(exchange)  # fail early, on the caller's thread, with a clear message
        self.state = state or SharedState(exchange, self.symbols, self.settings.health, clock)
        if self.state.symbols != self.symbols:
            raise ConfigError(f"the shared state carries {self.state.symbols}, the feed {self.symbols}")
        if engine is True:
            factory: EngineFactory | None = default_engine_factory(self.settings, timeframe)
        elif engine is False:
            factory = None
        else:
            factory = engine
        history_len = self.settings.flow.candle_history
        self._pairs = {
            s: _Pair(exchange, s, self.settings.feed.book_depth, factory(exchange, s) if factory else None,
                     clock, history_len)
            for s in self.symbols
        }
        self.stats = FeedStats(by_symbol=dict.fromkeys(self.symbols, 0))
        self.recorder: _Recorder | None = None
        self._lock = threading.Lock()
        self._runner: _Runner | None = None

    # ---- control (any thread) ------------------------------------------------------------------------------

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
                self.recorder = _Recorder(self.record_to, self.settings)
            self._runner = _Runner(self)
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


def _exchange_class(exchange_id: str) -> Any:
    import ccxt.pro

    cls = getattr(ccxt.pro, exchange_id, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(
            f"exchange {exchange_id!r} has no ccxt.pro websocket client; use a ccxt id such as "
            "binance, binanceusdm, kraken, okx (see ccxt.pro.exchanges)"
        )
    return cls


class _Runner:
    """One run of the feed thread: its loop, its ccxt client, its tasks. A restart makes a new one."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.settings = feed.settings.feed
        self.pairs = feed._pairs
        self.state = feed.state
        self.stats = feed.stats
        self.exchange_id = feed.exchange_id
        self.recorder = feed.recorder
        self.clock = feed.clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.stopping = threading.Event()
        self.ex: Any = None
        self._last_us = 0
        #: websocket URL -> connection losses seen by the frame guard (see ``_guard_frames``)
        self.losses: dict[str, int] = {}
        self._dirty: dict[str, _Pair] = {}  # pairs waiting for ``_publish_dirty``
        self._unsettled: dict[str, _Pair] = {}  # pairs whose engine waits for ``_settle_next``, oldest first
        self.thread = threading.Thread(target=self._run, name=f"helios-feed-{feed.exchange_id}", daemon=True)

    # ---- thread and loop ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping.set()
        loop, task = self.loop, self.main_task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to cancel
                loop.call_soon_threadsafe(task.cancel)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            asyncio.set_event_loop(loop)
            self.main_task = loop.create_task(self._main())
            self.loop = loop
            if self.stopping.is_set():
                self.main_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self.main_task)
        except BaseException as exc:  # nothing may escape the thread (a bad ccxt config, or a bug)
            log.exception("helios feed thread failed")
            for p in self.pairs.values():
                with contextlib.suppress(Exception):
                    p.health.on_error("error", f"feed stopped: {describe(exc)}", book=True)
                    self._publish(p)
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        cls = _exchange_class(self.exchange_id)
        config: dict[str, Any] = {"enableRateLimit": True}
        config.update(self.feed.ccxt_config)
        streaming = dict(config.get("streaming") or {})
        streaming.setdefault("keepAlive", int(self.settings.ws_keepalive_s * 1000))
        config["streaming"] = streaming
        self.ex = ex = cls(config)
        _guard_frames(ex, self.losses, self._on_resolve)
        for p in self.pairs.values():
            p.differ.reset()
            p.last_trade = p.last_bbo = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.feed.on_exchange is not None:
                self.feed.on_exchange(ex)
            await self._load_markets()
            live = []
            for p in self.pairs.values():
                if p.symbol in ex.markets:
                    live.append(p)
                else:
                    p.health.on_error("error", f"{p.symbol} is not a market of {self.exchange_id}", book=True)
                    self._publish(p)
                    log.error("%s is not a market of %s; it is skipped", p.symbol, self.exchange_id)
            sup = self._supervised
            tasks = [asyncio.create_task(sup(lambda p=p: self._book_loop(p), [p])) for p in live]
            has = ex.has
            if live and self.settings.trades:
                if self.settings.multi_symbol and has.get("watchTradesForSymbols") and len(live) > 1:
                    tasks.append(asyncio.create_task(sup(lambda: self._trades_loop(live, multi=True), live)))
                else:
                    tasks.extend(
                        asyncio.create_task(sup(lambda p=p: self._trades_loop([p], multi=False), [p]))
                        for p in live
                    )
            if live and self.settings.bbo and has.get("watchBidsAsks"):
                groups = [live] if self.settings.multi_symbol else [[p] for p in live]
                tasks.extend(asyncio.create_task(sup(lambda g=g: self._bbo_loop(g), g)) for g in groups)
            if tasks:
                await asyncio.gather(*tasks)
            else:
                await asyncio.Event().wait()  # nothing to watch: idle until stopped
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(ex.close(), timeout=1.5)

    async def _supervised(self, make: Callable[[], Any], group: list[_Pair]) -> None:
        """Run one watch loop; should it ever end with an exception (a bug: the loops catch what the
        network throws), log it, count it in the pairs' health and start it again after a backoff."""
        backoff = self._backoff()
        while True:
            try:
                await make()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s: a watch loop failed; restarting it", ", ".join(p.symbol for p in group))
                for p in group:
                    p.health.on_error("error", f"internal: {describe(exc)}", book=False)
                    with contextlib.suppress(Exception):
                        self._publish(p)
                await asyncio.sleep(backoff.next_delay())

    async def _load_markets(self) -> None:
        backoff = self._backoff()
        while True:
            try:
                await self.ex.load_markets()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                msg = f"loading markets: {describe(exc)}"
                log.warning("%s %s; retrying", self.exchange_id, msg)
                for p in self.pairs.values():
                    p.health.on_error(error_kind(exc), msg, book=True)
                    self._publish(p)
                await asyncio.sleep(backoff.next_delay())

    def _backoff(self) -> Backoff:
        s = self.settings
        return Backoff(s.backoff_initial_s, s.backoff_max_s, 2.0, s.backoff_jitter)

    def _now_us(self) -> int:
        t = time.time_ns() // 1000
        if t < self._last_us:
            t = self._last_us
        self._last_us = t
        return t

    # ---- watch loops ----------------------------------------------------------------------------------------

    async def _book_loop(self, p: _Pair) -> None:
        """Keep the pair's book subscription alive and turn its failures into declared gaps.

        The books themselves are handled where ccxt resolves them (``_on_resolve``, inside ccxt's frame
        handling), so a pair's update is published the moment its frame is handled, not after every other
        frame that arrived in the same read. The await here still carries ccxt's errors and re-subscribes;
        it handles a book itself only for an exchange that resolves something other than its live book.
        """
        ex = self.ex
        backoff = self._backoff()
        depth = self.settings.book_depth
        symbol = p.symbol
        while True:
            seen = p.books_handled
            try:
                book = await ex.watch_order_book(symbol, depth)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed([p], error_kind(exc), f"book: {describe(exc)}", book=True)
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            if p.books_handled == seen:
                self._on_book(p, book)

    def _on_resolve(self, result: Any) -> None:
        """ccxt resolved a watcher with ``result``, inside its handling of a frame: when that is the live
        book, trades cache or quote of one of our pairs, handle it now, so each pair's update is published
        as soon as its own frame is handled (the watch loops wake only after every frame of the read). The
        loops, woken later, find nothing new. Never raises (an exception here would drop the connection)."""
        try:
            ex = self.ex
            if isinstance(result, list):  # a trades cache (ccxt's ArrayCache), newest last
                if result:
                    last = result[-1]
                    p = self.pairs.get(last.get("symbol")) if isinstance(last, dict) else None
                    if p is not None and self.settings.trades and (ex.trades or {}).get(p.symbol) is result:
                        self._drain_trades(p, result, self._now_us())
            elif isinstance(result, dict):
                p = self.pairs.get(result.get("symbol"))  # type: ignore[arg-type]
                if p is None:
                    return
                if "nonce" in result:  # an order book (a dict subclass in ccxt)
                    if (ex.orderbooks or {}).get(p.symbol) is result:
                        self._on_book(p, result)
                elif "bid" in result and self.settings.bbo and (ex.bidsasks or {}).get(p.symbol) is result:
                    self._on_bbo(p, result, self._now_us())
        except Exception:
            log.exception("handling an update from ccxt failed")

    def _on_book(self, p: _Pair, book: Any) -> None:
        """One observation of ccxt's book: the exact level changes to the engine and recorder, then publish.
        Never raises (it runs inside ccxt's frame handling, where an exception would drop the connection)."""
        p.books_handled += 1
        differ = p.differ
        try:
            event = differ.observe(book, self._now_us())
        except Exception as exc:
            self._failed([p], "error", f"book: {describe(exc)}", book=True)
            return
        try:
            p.health.on_book(snapshot=isinstance(event, BookSnapshot), crossed=differ.is_crossed(),
                             changed=event is not None)
            if event is not None:
                self._emit(p, event)
            self._publish(p)
            if getattr(p.engine, "unsettled", False):
                self._settle_soon(p)
        except Exception:  # a bug downstream must not stop the pair's feed
            log.exception("%s: publishing a book update failed", p.symbol)

    def _url_of(self, message_hash: str) -> str | None:
        """The websocket URL of the connection that carries ``message_hash`` (stable across reconnects)."""
        for c in list((self.ex.clients or {}).values()):
            if message_hash in getattr(c, "subscriptions", {}):
                return str(c.url)
        return None

    async def _trades_loop(self, group: list[_Pair], *, multi: bool) -> None:
        ex = self.ex
        backoff = self._backoff()
        symbols = [p.symbol for p in group]
        url: str | None = None
        seen_losses = 0
        while True:
            # ccxt rejects only the watch calls pending when a connection dies; if it died while this loop
            # was busy (not awaiting), the next call quietly reconnects and the trades in between are gone.
            # The frame guard counts every connection loss, so such a loss is declared here all the same.
            if url is None:
                url = self._url_of(f"trade::{symbols[0]}")
                seen_losses = self.losses.get(url, 0) if url else 0
            elif self.losses.get(url, 0) > seen_losses:
                seen_losses = self.losses.get(url, 0)
                # Trades that reached ccxt's cache before the loss are not lost: they go before the gap.
                self._drain_group(group)
                self._failed(group, "reconnect", "trades: connection lost between two reads", book=False)
            try:
                if multi:
                    await ex.watch_trades_for_symbols(symbols)
                else:
                    await ex.watch_trades(symbols[0])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._drain_group(group)
                self._failed(group, error_kind(exc), f"trades: {describe(exc)}", book=False)
                if url is not None:
                    seen_losses = self.losses.get(url, 0)  # this loss is declared already
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._drain_group(group)

    def _drain_group(self, group: list[_Pair]) -> None:
        """Emit every new trade ccxt holds for the pairs of ``group``."""
        local = self._now_us()
        caches = self.ex.trades or {}
        for p in group:
            try:
                self._drain_trades(p, caches.get(p.symbol), local)
            except Exception:
                log.exception("%s: handling trades failed", p.symbol)

    async def _bbo_loop(self, group: list[_Pair]) -> None:
        ex = self.ex
        backoff = self._backoff()
        symbols = [p.symbol for p in group]
        while True:
            try:
                await ex.watch_bids_asks(symbols)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _unsupported(exc):
                    # Quotes are optional (they only check the book): a venue that refuses them is left alone.
                    log.warning("%s: no best bid/offer stream (%s); going on without it", self.exchange_id,
                                describe(exc))
                    return
                # Quotes only check the book: no gap is declared for them, the error is counted.
                for p in group:
                    p.health.on_error(error_kind(exc), f"best bid/offer: {describe(exc)}", book=False)
                    self._publish(p)
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            local = self._now_us()
            quotes = ex.bidsasks
            for p in group:
                q = quotes.get(p.symbol)
                if q is not None and q is not p.last_bbo:
                    self._on_bbo(p, q, local)

    def _on_bbo(self, p: _Pair, q: Any, local: int) -> None:
        p.last_bbo = q
        try:
            event = _bbo_event(self.exchange_id, p.symbol, q, local)
            if event is not None:
                p.health.on_bbo()
                self._emit(p, event)
                self._publish_soon(p)
        except Exception:
            log.exception("%s: handling best bid/offer failed", p.symbol)

    def _drain_trades(self, p: _Pair, cache: Any, local: int) -> None:
        """Emit the trades ccxt cached for ``p`` since the last one emitted, oldest first."""
        if cache is None or not len(cache):
            return
        newest = cache[-1]
        seen = p.last_trade
        if newest is seen:
            return
        fresh: list[Any] = []
        for t in reversed(cache):
            if t is seen:
                break
            fresh.append(t)
        else:
            if seen is not None:
                # The last emitted trade fell out of ccxt's cache (tradesLimit): some were lost.
                self._gap(p, f"trades: more than {len(cache)} trades between two reads; older ones lost", local)
        p.last_trade = newest
        fresh.reverse()
        events = [e for e in (_trade_event(self.exchange_id, p.symbol, t, local) for t in fresh) if e is not None]
        guard = p.trade_ids
        if guard is not None and events:
            kept: list[Trade] = []
            dropped: list[Trade] = []
            for e in events:
                (kept if guard.admit(e.trade_id, e.ts_us) else dropped).append(e)
            if dropped:
                self._duplicates(p, dropped)
                events = kept
        if events:
            p.health.on_trades(len(events))
            for e in events:
                self._emit(p, e)
            self._publish_soon(p)

    def _duplicates(self, p: _Pair, dropped: list[Trade]) -> None:
        """Count the trades the guard dropped, in health and stats, and say so (at most once a minute)."""
        n = len(dropped)
        self.stats.duplicate_trades += n
        p.health.on_duplicate_trades(n)
        now = self.clock()
        if now - p.dup_logged_mono_s >= 60.0:
            p.dup_logged_mono_s = now
            log.warning("%s %s: dropped %d trade(s) delivered again (ids %s..%s; %d so far): ccxt handed over "
                        "trades already emitted", self.exchange_id, p.symbol, n, dropped[0].trade_id,
                        dropped[-1].trade_id, p.health.duplicate_trades)

    # ---- events out ---------------------------------------------------------------------------------------------

    def _failed(self, group: Iterable[_Pair], kind: str, message: str, *, book: bool) -> None:
        local = self._now_us()
        for p in group:
            log.warning("%s %s: %s (%s)", self.exchange_id, p.symbol, message, kind)
            p.health.on_error(kind, message, book=book)
            self._gap(p, f"{kind}: {message}", local)
            self._publish(p)

    def _gap(self, p: _Pair, reason: str, local: int) -> None:
        """Declare lost data. The engine then waits for a book snapshot, so the next book observation is
        one (even when only trades were lost)."""
        self.stats.gaps += 1
        p.differ.reset()
        self._emit(p, FeedGap(self.exchange_id, p.symbol, local, local, reason))

    def _emit(self, p: _Pair, event: Event) -> None:
        """One event to the pair's engine and the recorder, in that single order."""
        stats = self.stats
        stats.events += 1
        stats.by_symbol[p.symbol] += 1
        kind = type(event)
        if kind is Trade:
            stats.trades += 1
        elif kind is BookSnapshot:
            stats.book_snapshots += 1
        elif kind is BestBidOffer:
            stats.bbo += 1
        elif kind is not FeedGap:
            stats.book_deltas += 1
        p.local_ts_us = event.local_ts_us
        if self.recorder is not None:
            self.recorder.put(event)
        engine = p.engine
        if engine is not None and not p.engine_broken:
            try:
                engine.on_event(event)
            except Exception:
                # The engine is deterministic: after an exception its state no longer matches what a
                # replay of the recording would give, so it is not fed again (recording goes on).
                stats.engine_errors += 1
                p.engine_broken = True
                p.health.on_error("error", f"engine failed on {kind.__name__}; order-flow state frozen", book=False)
                log.exception("%s: the engine failed; its state is frozen (the recording goes on)", p.symbol)

    def _publish_soon(self, p: _Pair) -> None:
        """Publish ``p`` once the frames at hand are handled: ccxt handles every frame of a socket read in
        one go, and a read at a busy moment brings dozens (every pair's trades and quotes of the same
        instant), so each pair is published once per read instead of once per frame. Books are published at
        once (``_publish``): they are what a callback reads first."""
        dirty = self._dirty
        if not dirty:
            loop = self.loop
            if loop is None:
                self._publish(p)
                return
            loop.call_soon(self._publish_dirty)
        dirty[p.symbol] = p

    def _publish_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for p in dirty.values():
            try:
                self._publish(p)
            except Exception:
                log.exception("%s: publishing failed", p.symbol)

    def _settle_soon(self, p: _Pair) -> None:
        """Have the pair's engine do its deferred timer work (heatmap column, wall scan) once the frames
        at hand are handled, then publish again. Every pair's timers fall due in the same socket read; done
        inline, the last pair's book would wait for all of them."""
        if not self._unsettled:
            loop = self.loop
            if loop is None:
                self._unsettled[p.symbol] = p
                while self._unsettled:
                    self._settle_next()
                return
            loop.call_soon(self._settle_next)
        self._unsettled[p.symbol] = p

    def _settle_next(self) -> None:
        """Settle one pair, then yield to the loop before the next: frames read meanwhile (and the trades
        waiting for ``_publish_dirty``) wait for one pair's timer work at most, not for every pair's."""
        if not self._unsettled:
            return
        symbol = next(iter(self._unsettled))
        p = self._unsettled.pop(symbol)
        if self._unsettled and self.loop is not None:
            self.loop.call_soon(self._settle_next)
        engine = p.engine
        if engine is None or p.engine_broken or not getattr(engine, "unsettled", False):
            return  # settled already (a trade or the next timers did it) and published since
        try:
            engine.settle()  # type: ignore[attr-defined]
        except Exception:
            self.stats.engine_errors += 1
            p.engine_broken = True
            p.health.on_error("error", "engine failed in its timer work; order-flow state frozen", book=False)
            log.exception("%s: the engine failed; its state is frozen (the recording goes on)", p.symbol)
        try:
            self._publish(p)
        except Exception:
            log.exception("%s: publishing failed", p.symbol)

    def _publish(self, p: _Pair) -> None:
        """Swap in a new immutable snapshot of the pair."""
        self._dirty.pop(p.symbol, None)
        engine_state = None
        if p.engine is not None:
            try:
                engine_state = p.engine.snapshot()
            except Exception:
                self.stats.engine_errors += 1
                log.exception("%s: engine snapshot failed", p.symbol)
                engine_state = self.state.get(p.symbol).engine  # type: ignore[union-attr]
            _update_history(p, engine_state)
        p.seq += 1
        self.stats.publications += 1
        d = p.differ
        self.state.publish(
            PairSnapshot(
                exchange=self.exchange_id,
                symbol=p.symbol,
                health=p.health.snapshot(),
                engine=engine_state,
                history=p.history.rows(),
                best_bid=d.best_bid(),
                best_ask=d.best_ask(),
                local_ts_us=p.local_ts_us,
                published_mono_s=self.clock(),
                seq=p.seq,
            )
        )


def _guard_frames(ex: Any, losses: dict[str, int], on_resolve: Callable[[Any], None] | None = None) -> None:
    """Make a frame ccxt cannot handle drop the connection instead of silently stalling it.

    ccxt handles each websocket frame in a callback that also schedules the next read; when handling
    raises (a truncated JSON frame, an unexpected payload), the read loop ends while the socket stays open:
    no future resolves again until the keepalive gives up. Every client the exchange creates gets its
    frame handler wrapped: an exception becomes a ``NetworkError`` on that connection, which rejects its
    watchers; the feed's loops then reconnect and resync at once. Its ``on_error``/``on_close`` also count
    connection losses per URL in ``losses``, so a loop can tell that its connection died while it was not
    awaiting (ccxt then reconnects on the next call without raising); frames a lost connection still
    delivers afterwards are dropped, since the gap declared for the loss covers them. ``on_resolve`` is
    called with every result ccxt resolves a watcher with, right there in the frame's handling (it must
    not raise).
    """
    import ccxt

    make_client = ex.client
    _own_callbacks_only(ex)

    def client(url: str) -> Any:
        c = make_client(url)
        if not getattr(c, "_helios_guarded", False):
            handle = c.handle_text_or_binary_message

            def guarded(data: Any, _handle: Any = handle, _c: Any = c) -> None:
                if getattr(_c, "_helios_lost", None) == ("lost", _c.connectionEstablished):
                    # A frame read before the loss but handled after it (ccxt closes the socket later,
                    # and the feed may have declared the gap meanwhile): it lies inside the gap. Handled,
                    # it would land after the gap marker and make the hole behind it look covered.
                    return
                if (ex.clients or {}).get(_c.url) is not _c:
                    # Only the client registered for its URL may deliver: another one is a connection ccxt
                    # forgot (its watchers were re-dialled on a new one), and both would hand over every
                    # trade. Drop the frame and close the stray connection; its pending watchers are rejected,
                    # so a loop awaiting one declares the gap and dials again.
                    _c.on_error(ccxt.NetworkError(f"a second connection to {_c.url} was closed"))
                    return
                try:
                    _handle(data)
                except Exception as exc:
                    _c.on_error(ccxt.NetworkError(f"a frame from {_c.url} could not be handled ({describe(exc)})"))

            c.handle_text_or_binary_message = guarded
            on_error, on_close = c.on_error, c.on_close

            def lost(conn: Any) -> None:
                # One loss per connection however often it is reported (on_error, then on_close); a client
                # that dials again gets a new connectionEstablished time.
                mark = ("lost", conn.connectionEstablished)
                if getattr(conn, "_helios_lost", None) != mark:
                    conn._helios_lost = mark
                    losses[conn.url] = losses.get(conn.url, 0) + 1

            def lost_on_error(error: Any, _on_error: Any = on_error, _c: Any = c) -> Any:
                lost(_c)
                return _on_error(error)

            def lost_on_close(code: Any, _on_close: Any = on_close, _c: Any = c) -> Any:
                lost(_c)
                return _on_close(code)

            c.on_error, c.on_close = lost_on_error, lost_on_close
            if on_resolve is not None:
                resolve = c.resolve

                def resolved(result: Any, message_hash: Any, _resolve: Any = resolve) -> Any:
                    on_resolve(result)
                    return _resolve(result, message_hash)

                c.resolve = resolved
            c._helios_guarded = True
        return c

    ex.client = client


def _own_callbacks_only(ex: Any) -> None:
    """Let a ccxt client's close and error callbacks unregister that client only, never its successor.

    ccxt reports a server's close twice: ``on_close(1001)`` when the close frame is read, which removes the
    client from ``exchange.clients``, and ``on_close(1006)`` a few callbacks later, when its receive loop
    finds the socket closed. ``Exchange.on_close`` then removes whatever client holds the URL by then. A
    watch loop that called ccxt again in between (the trades loop does at once when it finds the loss
    between two reads, which is how a busy feed finds it) has dialled a new client: the late callback
    unregisters that live client, the next call dials a third, and from then on two connections deliver
    every trade of the URL. This is the duplicated-trades defect seen under load (docs/reliability.md).
    The callbacks are read by ``exchange.client()`` when a client is made, so they are replaced here
    before the first one is.
    """

    def if_registered(callback: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def call(client: Any, error: Any) -> Any:
            return callback(client, error) if (ex.clients or {}).get(client.url) is client else None

        return call

    ex.on_close, ex.on_error = if_registered(ex.on_close), if_registered(ex.on_error)


def _update_history(p: _Pair, engine_state: Any) -> None:
    """Append the candles the engine closed since the last publication to the pair's bounded history.

    The engine's state carries the newest closed candle (``candle``) and a count (``candles_closed``);
    when more than one closed at once (a quiet stretch ends), the rest are read from the engine's own
    bounded ``history`` (this runs on the feed thread, which owns the engine).
    """
    if engine_state is None:
        return
    closed = getattr(engine_state, "candles_closed", None)
    if closed is None or closed <= p.candles_seen:
        return
    new = closed - p.candles_seen
    p.candles_seen = closed
    if new == 1:
        p.history.add(engine_state.candle)
        return
    rows = list(getattr(p.engine, "history", ()))[-new:] or [engine_state.candle]
    for row in rows:
        p.history.add(row)


def _trade_event(exchange: str, symbol: str, t: Mapping[str, Any], local: int) -> Trade | None:
    side = t.get("side")
    price = t.get("price")
    amount = t.get("amount")
    if side not in ("buy", "sell") or price is None or amount is None:
        return None  # a venue that does not say the taker's side gives no order-flow trade
    ts = t.get("timestamp")
    return Trade(
        exchange=exchange,
        symbol=symbol,
        ts_us=int(ts) * 1000 if ts is not None else local,
        local_ts_us=local,
        price=float(price),
        amount=float(amount),
        side=side,
        trade_id=str(t.get("id") if t.get("id") is not None else ""),
    )


def _bbo_event(exchange: str, symbol: str, q: Mapping[str, Any], local: int) -> BestBidOffer | None:
    bid, ask = q.get("bid"), q.get("ask")
    if bid is None or ask is None:
        return None
    info = q.get("info")
    uid = info.get("u") if isinstance(info, Mapping) else None
    ts = q.get("timestamp")
    return BestBidOffer(
        exchange=exchange,
        symbol=symbol,
        ts_us=int(ts) * 1000 if ts is not None else local,
        local_ts_us=local,
        update_id=int(uid) if isinstance(uid, (int, str)) and str(uid).isdigit() else NO_ID,
        bid_price=float(bid),
        bid_amount=float(q.get("bidVolume") or 0.0),
        ask_price=float(ask),
        ask_amount=float(q.get("askVolume") or 0.0),
    )


__all__ = ["Engine", "EngineFactory", "Feed", "FeedStats", "default_engine_factory"]
