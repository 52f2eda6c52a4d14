"""The feed thread's run: its asyncio loop, its ccxt client, the watch loops, and the way each event goes to
the pair's engine, the recorder and the shared state (see ``feed.py`` for the design). A restart of the
feed makes a new ``Runner``; the per-pair state (``Pair``) outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from helios_orderflow.core.errors import describe
from helios_orderflow.core.events import BookSnapshot, Trade
from helios_orderflow.core.settings import FeedSettings
from helios_orderflow.live.backoff import Backoff
from helios_orderflow.live.ccxt_edge import (
    bbo_event,
    error_kind,
    exchange_class,
    guard_frames,
    trade_event,
    unsupported,
    url_of,
)
from helios_orderflow.live.publish import FeedStats, Pair, Publisher
from helios_orderflow.live.state import SharedState
from helios_orderflow.live.venue_checks import NO_BBO, book_limit, frame_checks
from helios_orderflow.recording.recorder import Recorder

log = logging.getLogger(__name__)


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
        for p in self.pairs.values():
            p.differ.reset()
            p.last_trade = p.last_bbo = None
        tasks: list[asyncio.Task[None]] = []
        try:
            if self.on_exchange is not None:
                self.on_exchange(ex)
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
            tasks = [asyncio.create_task(sup(partial(self._book_loop, p), [p])) for p in live]
            has = ex.has
            self._say_limits(live, has)
            if live and self.settings.trades:
                if self.settings.multi_symbol and has.get("watchTradesForSymbols") and len(live) > 1:
                    tasks.append(asyncio.create_task(sup(partial(self._trades_loop, live, multi=True), live)))
                else:
                    tasks.extend(
                        asyncio.create_task(sup(partial(self._trades_loop, [p], multi=False), [p]))
                        for p in live
                    )
            if live and self.settings.bbo and has.get("watchBidsAsks") and self.exchange_id not in NO_BBO:
                groups = [live] if self.settings.multi_symbol else [[p] for p in live]
                tasks.extend(asyncio.create_task(sup(partial(self._bbo_loop, g), g)) for g in groups)
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
                await ex.watch_bids_asks(symbols)
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
            event = bbo_event(self.exchange_id, p.symbol, q, local)
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
        events = [e for e in (trade_event(self.exchange_id, p.symbol, t, local) for t in fresh) if e is not None]
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
