"""The feed thread's run: its asyncio loop, its ccxt client, the watch loops, and the way each event goes to
the pair's engine, the recorder and the shared state (see ``feed.py`` for the design). A restart of the
feed makes a new ``Runner``; the per-pair state (``Pair``) outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from helios_orderflow.core.errors import describe
from helios_orderflow.core.events import BookSnapshot, FeedGap, Trade
from helios_orderflow.core.settings import FeedSettings
from helios_orderflow.live.backoff import Backoff
from helios_orderflow.live.ccxt_edge import (
    amount_scale,
    bbo_event,
    error_kind,
    exchange_class,
    guard_frames,
    trade_event,
    unsupported,
    unwatch,
    url_of,
    watch_cancelled,
)
from helios_orderflow.live.gc_pacer import GcPacer
from helios_orderflow.live.publish import FeedStats, Pair, Publisher
from helios_orderflow.live.state import SharedState
from helios_orderflow.live.venue_checks import NO_BBO, SYMBOLS_PER_WATCH, book_limit, frame_checks
from helios_orderflow.recording.recorder import Recorder

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Group:
    """A multi-symbol watch task: ``symbols`` subscribed when it started (what its watch call keeps asking
    for), ``pairs`` the pairs it feeds now (its loop reads the list on every wake-up)."""

    kind: str
    symbols: tuple[str, ...]
    pairs: list[Pair]
    task: asyncio.Task[None]



def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The feed loop's handler of exceptions nobody retrieved: ccxt answers a venue's ping with a pong task it
    never awaits, and when the connection is closing meanwhile (a venue dropping it, a fault) that task fails
    with "Cannot write to closing transport". The connection's loss is handled (a gap, a reconnect) where it
    is read, so this one is logged at debug level; anything else goes to asyncio's default handler (an
    ERROR line)."""
    task = context.get("future")
    exc = context.get("exception")
    coro = getattr(task, "get_coro", lambda: None)() if task is not None else None
    if isinstance(exc, ConnectionError) and getattr(coro, "__qualname__", "") == "ClientWebSocketResponse.pong":
        log.debug("a websocket pong to a closing connection failed: %s", exc)
        return
    loop.default_exception_handler(context)

class Runner(Publisher):
    """One run of the feed thread: its loop, its ccxt client, its tasks. A restart makes a new one."""

    def __init__(self, exchange_id: str, settings: FeedSettings, pairs: dict[str, Pair], state: SharedState,
                 stats: FeedStats, recorder: Recorder | None, clock: Callable[[], float],
                 ccxt_config: Mapping[str, Any], on_exchange: Callable[[Any], None] | None) -> None:
        self.settings = settings
        self.pairs = pairs
        self.state = state
        self.stats = stats
        self.exchange_id = exchange_id
        self.recorder = recorder
        self.clock = clock
        self.ccxt_config = ccxt_config
        self.on_exchange = on_exchange
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task[None] | None = None
        self.stopping = threading.Event()
        self.ex: Any = None
        self._last_us = 0
        #: websocket URL -> connection losses seen by the frame guard (see ``ccxt_edge.guard_frames``)
        self.losses: dict[str, int] = {}
        self._dirty: dict[str, Pair] = {}  # pairs waiting for ``_publish_dirty``
        self._unsettled: dict[str, Pair] = {}  # pairs whose engine waits for ``_settle_next``, oldest first
        #: The watch tasks: a pair's own (its book, its single-pair trades), and those of groups of pairs
        #: (multi-symbol trades and quotes) with the group's list, which the loops read on every wake-up.
        self._pair_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._groups: list[_Group] = []
        self._watching = False  # the watch tasks exist (markets loaded): new pairs get their own at once
        self._gc_task: asyncio.Task[None] | None = None  # the paced garbage collections (``_gc_loop``)
        #: symbol -> the engine's event time when the pair left (its checkpoint then); shared with the Feed
        self.left_at_us: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name=f"helios-feed-{exchange_id}", daemon=True)

    # ---- thread and loop ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        self.stopping.set()
        loop, task = self.loop, self.main_task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: nothing to cancel
                loop.call_soon_threadsafe(task.cancel)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_loop_exception)
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
        cls = exchange_class(self.exchange_id)
        config: dict[str, Any] = {"enableRateLimit": True}
        config.update(self.ccxt_config)
        streaming = dict(config.get("streaming") or {})
        streaming.setdefault("keepAlive", int(self.settings.ws_keepalive_s * 1000))
        config["streaming"] = streaming
        self.ex = ex = cls(config)
        precheck, check = frame_checks(self.exchange_id, ex)
        guard_frames(ex, self.losses, self._on_resolve, check=check, precheck=precheck)
        local = self._now_us()
        for p in self.pairs.values():
            p.differ.reset()
            p.last_trade = p.last_bbo = None
            if p.warmed:  # the engine continues a recorded session: the time the feed was down is a declared gap
                p.warmed = False
                self._gap(p, "restart: the session continues from the recording", local)
        try:
            if self.on_exchange is not None:
                self.on_exchange(ex)
            await self._load_markets()
            self._watch_pairs(list(self.pairs.values()))
            self._watching = True
            if self.settings.gc_every_s > 0:
                self._gc_task = asyncio.create_task(self._gc_loop())
            await asyncio.Event().wait()  # the watch tasks run until the feed stops (they never end by themselves)
        finally:
            if self.checkpoint_every_us:  # a clean stop leaves nothing to replay at the next start
                for p in list(self.pairs.values()):
                    self._checkpoint(p)
            tasks = self._all_tasks()
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(ex.close(), timeout=1.5)

    def _all_tasks(self) -> list[asyncio.Task[None]]:
        gc_task = [self._gc_task] if self._gc_task is not None else []
        return [t for ts in self._pair_tasks.values() for t in ts] + [g.task for g in self._groups] + gc_task

    async def _gc_loop(self) -> None:
        """Collect Python's garbage at the feed's pace (``gc_pacer.py`` says why a Freqtrade process needs it)."""
        pacer = GcPacer(self.settings.gc_full_every)
        st = self.stats
        while True:
            await asyncio.sleep(self.settings.gc_every_s)  # a period, not a wait for something to happen
            full_before = pacer.full_collections
            pacer.tick()
            st.gc_collections += 1
            st.gc_full_collections += pacer.full_collections - full_before
            st.gc_max_pause_us = max(st.gc_max_pause_us, int(pacer.last_pause_s * 1e6))

    def _watch_pairs(self, pairs: list[Pair]) -> None:
        """Start the watch tasks of ``pairs`` (at start, and for pairs that join later): its book per pair,
        trades and quotes in multi-symbol groups where the venue has them. Tasks already running for other
        pairs are not touched: a pair that joins adds subscriptions, it does not renew anyone's."""
        ex = self.ex
        live = []
        for p in pairs:
            if p.symbol in ex.markets:
                # contracts to base units at the edge: books, trades and quotes (OKX swaps)
                p.differ.amount_scale = amount_scale(ex.markets[p.symbol])
                live.append(p)
            else:
                p.health.on_error("error", f"{p.symbol} is not a market of {self.exchange_id}", book=True)
                self._publish(p)
                log.error("%s is not a market of %s; it is skipped", p.symbol, self.exchange_id)
        sup = self._supervised
        for p in live:
            self._pair_tasks[p.symbol] = [asyncio.create_task(sup(partial(self._book_loop, p), [p]))]
        has = ex.has
        self._say_limits(live, has)
        # a pair that left and comes back is still subscribed in its old multi-symbol group: it rejoins it
        fresh_trades = [p for p in live if not self._rejoin("trades", p)]
        fresh_bbo = [p for p in live if not self._rejoin("bbo", p)]
        if fresh_trades and self.settings.trades:
            if self.settings.multi_symbol and has.get("watchTradesForSymbols") and len(fresh_trades) > 1:
                size = SYMBOLS_PER_WATCH.get(self.exchange_id, len(fresh_trades))
                for i in range(0, len(fresh_trades), size):
                    self._group("trades", fresh_trades[i:i + size])
            else:
                for p in fresh_trades:
                    self._pair_tasks[p.symbol].append(
                        asyncio.create_task(sup(partial(self._trades_loop, [p], multi=False), [p])))
        if fresh_bbo and self.settings.bbo and has.get("watchBidsAsks") and self.exchange_id not in NO_BBO:
            for g in [fresh_bbo] if self.settings.multi_symbol else [[p] for p in fresh_bbo]:
                self._group("bbo", g)

    def _group(self, kind: str, pairs: list[Pair]) -> None:
        """One multi-symbol watch task (``kind`` "trades" or "bbo") for ``pairs``."""
        loop = partial(self._trades_loop, pairs, multi=True) if kind == "trades" else partial(self._bbo_loop, pairs)
        task = asyncio.create_task(self._supervised(loop, pairs))
        self._groups.append(_Group(kind, tuple(p.symbol for p in pairs), pairs, task))

    def _rejoin(self, kind: str, p: Pair) -> bool:
        for g in self._groups:
            if g.kind == kind and p.symbol in g.symbols:
                if kind == "trades":
                    # What ccxt cached for the pair while it was away belongs to its "left the feed's pairs" gap,
                    # and may itself have holes (a connection lost meanwhile was declared for the pairs then
                    # followed, not for this one): the pair's trades start with the first one after it rejoined.
                    cache = (self.ex.trades or {}).get(p.symbol)
                    if cache is not None and len(cache):
                        p.last_trade = cache[-1]
                g.pairs.append(p)
                return True
        return False

    def change_pairs(self, joined: dict[str, Pair], left: list[str]) -> None:
        """On the feed thread: follow ``joined`` from now on, and drop ``left``: their own watch tasks (book,
        single-pair trades) are cancelled and those subscriptions ended where the venue's ccxt client can
        (``ccxt_edge.unwatch``), a ``FeedGap`` is recorded and their state removed. Other pairs' tasks and
        subscriptions are left alone: no resync, no gap. A multi-symbol subscription (trades, quotes) is
        shared: it stays as it is, and what arrives in it for a pair that left is dropped at the edge
        (ending it would renew it for the pairs that stay; docs/venues.md)."""
        local = self._now_us()
        for symbol in left:
            p = self.pairs.pop(symbol, None)
            if p is None:
                continue
            own = self._pair_tasks.pop(symbol, [])
            for t in own:
                t.cancel()
            for g in self._groups:
                if p in g.pairs:
                    g.pairs.remove(p)  # the group's loop reads its list on every wake-up
            self._dirty.pop(symbol, None)
            self._unsettled.pop(symbol, None)
            self._emit(p, FeedGap(self.exchange_id, symbol, local, local, "left the feed's pairs"))
            if self.checkpoint_every_us and p.engine is not None:
                # the engine as it left: should the pair come back, its session continues from here
                # (``Feed.set_pairs``), once the recorder has written this checkpoint after the pair's events
                self.left_at_us[symbol] = p.engine.clock_us
                self._checkpoint(p)
            self.state.remove(symbol)
            if self._watching:
                trades_own = len(own) > 1  # its book task and its own trades task
                asyncio.get_running_loop().create_task(unwatch(self.ex, symbol, trades=trades_own))
        for symbol, p in joined.items():
            self.pairs[symbol] = p
            self.stats.by_symbol.setdefault(symbol, 0)
            self.state.add(symbol)
            if p.warmed:  # its engine continues the pair's recorded session: the time it was away is a gap
                p.warmed = False
                self._gap(p, "joined: the session continues from the recording", local)
        if self._watching and joined:
            self._watch_pairs(list(joined.values()))

    def _say_limits(self, live: list[Pair], has: Mapping[str, Any]) -> None:
        """Put in each pair's health what this venue's ccxt client cannot give (docs/venues.md)."""
        limits = []
        if self.settings.bbo and self.exchange_id in NO_BBO:
            limits.append(NO_BBO[self.exchange_id])
        elif self.settings.bbo and not has.get("watchBidsAsks"):
            limits.append("no best bid/offer stream: quotes are not recorded and the book is not cross-checked")
        if self.settings.trades and self.settings.multi_symbol and len(live) > 1 and not has.get(
                "watchTradesForSymbols"):
            limits.append("no multi-symbol trades watcher: one trades subscription per pair")
        for p in live:
            for text in limits:
                p.health.on_limit(text)
            if limits:
                self._publish(p)

    async def _supervised(self, make: Callable[[], Any], group: list[Pair]) -> None:
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

    # ---- watch loops ----------------------------------------------------------------------------------------

    async def _watch(self, call: Awaitable[T]) -> T:
        """Await a ccxt watch call. A ``CancelledError`` ccxt caused by closing the connection (it cancels the
        futures pending on it, see ``ccxt_edge.watch_cancelled``) is raised as the ``NetworkError`` it stands
        for, so the loop declares the loss and calls again; the feed's own cancellation propagates."""
        try:
            return await call
        except asyncio.CancelledError:
            lost = watch_cancelled(self.stopping.is_set())
            if lost is None:
                raise
            raise lost from None

    async def _book_loop(self, p: Pair) -> None:
        """Keep the pair's book subscription alive and turn its failures into declared gaps.

        The books themselves are handled where ccxt resolves them (``_on_resolve``, inside ccxt's frame
        handling), so a pair's update is published the moment its frame is handled, not after every other
        frame that arrived in the same read. The await here still carries ccxt's errors and re-subscribes;
        it handles a book itself only for an exchange that resolves something other than its live book.
        """
        ex = self.ex
        backoff = self._backoff()
        depth = book_limit(self.exchange_id, self.settings.book_depth)
        symbol = p.symbol
        while True:
            seen = p.books_handled
            try:
                book = await self._watch(ex.watch_order_book(symbol, depth))
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
                    p = self.pairs.get(str(last.get("symbol"))) if isinstance(last, dict) else None
                    if p is not None and self.settings.trades and (ex.trades or {}).get(p.symbol) is result:
                        self._drain_trades(p, result, self._now_us())
            elif isinstance(result, dict):
                p = self.pairs.get(str(result.get("symbol")))
                if p is None:
                    return
                if "nonce" in result:  # an order book (a dict subclass in ccxt)
                    if (ex.orderbooks or {}).get(p.symbol) is result:
                        self._on_book(p, result)
                elif "bid" in result and self.settings.bbo and (ex.bidsasks or {}).get(p.symbol) is result:
                    self._on_bbo(p, result, self._now_us())
        except Exception:
            log.exception("handling an update from ccxt failed")

    def _on_book(self, p: Pair, book: Any) -> None:
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
            if p.engine is not None and p.engine.unsettled:
                self._settle_soon(p)
        except Exception:  # a bug downstream must not stop the pair's feed
            log.exception("%s: publishing a book update failed", p.symbol)

    async def _trades_loop(self, group: list[Pair], *, multi: bool) -> None:
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
                url = url_of(self.ex, f"trade::{symbols[0]}")
                seen_losses = self.losses.get(url, 0) if url else 0
            elif self.losses.get(url, 0) > seen_losses:
                seen_losses = self.losses.get(url, 0)
                # Trades that reached ccxt's cache before the loss are not lost: they go before the gap.
                self._drain_group(group)
                self._failed(group, "reconnect", "trades: connection lost between two reads", book=False)
            try:
                if multi:
                    await self._watch(ex.watch_trades_for_symbols(symbols))
                else:
                    await self._watch(ex.watch_trades(symbols[0]))
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

    def _drain_group(self, group: list[Pair]) -> None:
        """Emit every new trade ccxt holds for the pairs of ``group``."""
        local = self._now_us()
        caches = self.ex.trades or {}
        for p in group:
            try:
                self._drain_trades(p, caches.get(p.symbol), local)
            except Exception:
                log.exception("%s: handling trades failed", p.symbol)

    async def _bbo_loop(self, group: list[Pair]) -> None:
        ex = self.ex
        backoff = self._backoff()
        symbols = [p.symbol for p in group]
        while True:
            try:
                await self._watch(ex.watch_bids_asks(symbols))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if unsupported(exc):
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

    def _on_bbo(self, p: Pair, q: Any, local: int) -> None:
        p.last_bbo = q
        try:
            event = bbo_event(self.exchange_id, p.symbol, q, local, p.differ.amount_scale)
            if event is not None:
                p.health.on_bbo()
                self._emit(p, event)
                self._publish_soon(p)
        except Exception:
            log.exception("%s: handling best bid/offer failed", p.symbol)

    def _drain_trades(self, p: Pair, cache: Any, local: int) -> None:
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
        scale = p.differ.amount_scale
        events = [e for e in (trade_event(self.exchange_id, p.symbol, t, local, scale) for t in fresh) if e is not None]
        if events and not events[-1].trade_id:
            # Without ids a trade delivered twice cannot be told from a second trade: it is kept, and said.
            p.health.on_limit("trades carry no ids: a trade the venue delivers twice cannot be recognised")
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

    def _duplicates(self, p: Pair, dropped: list[Trade]) -> None:
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
