"""The local exchange: an aiohttp app serving one venue's REST and websockets from a market source.

Time: the server runs on simulated time (see ``app.py``: wall-clock time minus the total time it was
frozen). Every 100 ms of simulated time (the grid counted from the source's ``origin_us``) it advances the
source, applies the faults that change the market (``gap``, ``crossed``), closes one diff per symbol and
hands the step's batch to the venue dialect (``dialects/``), which publishes it in its venue's protocol to
the subscribed websocket clients.

Imports go one way: this module serves the handlers of the dialect, which read the state they share with
it from ``app.py`` (``MarketApp``, which ``ExchangeServer`` is).

In-process use (tests, the live-feed helper)::

    from helios_orderflow.emulator import start_in_thread, SyntheticSource
    handle = start_in_thread(SyntheticSource(["BTC/USDT", "ETH/USDT"], seed=1), venue="okx")
    exchange = ccxt.pro.okx(handle.ccxt_config())   # or deep-merge handle.ccxt_config() into yours
    ...
    handle.book("BTC/USDT", 100)   # (the venue's last update id, bids, asks) as the server holds them
    handle.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from helios_orderflow.emulator.app import APP_KEY, MarketApp, MarketSource, ServerLog
from helios_orderflow.emulator.dialects import Dialect, dialect_class
from helios_orderflow.emulator.dialects.base import DIALECT_KEY
from helios_orderflow.emulator.faults import FaultPlan
from helios_orderflow.emulator.hub import HUB_KEY, Hub
from helios_orderflow.emulator.market import Batch, MarketState

log = logging.getLogger(__name__)
STEP_US = 100_000  # the diff grid: one book update per symbol per step at most
CROSSED_MS = 1000  # how long the ``crossed`` fault keeps a bid above the best ask
T = TypeVar("T")


class ExchangeServer(MarketApp):
    """REST + websocket server over a market source, speaking ``venue``'s protocol. Start with
    ``await start()``, stop with ``stop()``.

    The market, clock, faults and log it shares with the handlers are ``MarketApp``'s (``app.py``);
    ``faults``: an empty plan is kept as given, so a caller can switch faults on later.
    """

    def __init__(self, source: MarketSource, host: str = "127.0.0.1", port: int = 0, faults: FaultPlan | None = None,
                 ping_interval_s: float = 20.0, record: bool = False, record_depth: int = 100,
                 record_history: int = 3000, venue: str = "binance") -> None:
        cls = dialect_class(venue)
        unlisted = sorted({s.inst.market for s in source.states} - set(cls.markets))
        if unlisted:
            from helios_orderflow.core.errors import ConfigError

            raise ConfigError(f"the {venue} dialect lists {' and '.join(cls.markets)} markets, not {unlisted}; "
                              "use spot symbols (BTC/USDT) or a venue with perpetuals (bybit, okx, binance)")
        super().__init__(source, faults=faults, ping_interval_s=ping_interval_s, wire=cls.wire)
        self.venue = venue
        self.host = host
        self.port = port
        self.record = record
        self.record_depth = record_depth
        self.record_history = record_history
        self.hub = Hub(self)
        self.dialect: Dialect = cls(self, self.hub)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._uncross: dict[str, tuple[int, int, int]] = {}  # crossed fault: (price, qty to restore, until ms)
        self.next_step_us = source.origin_us + STEP_US

    # ---- urls ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ccxt_urls(self) -> dict[str, Any]:
        return self.dialect.ccxt_urls(self.url)

    def ccxt_config(self, market: str = "spot") -> dict[str, Any]:
        return self.dialect.ccxt_config(self.url, market)

    # ---- lifecycle -----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=self.dialect.middlewares())
        app[APP_KEY] = self
        app[HUB_KEY] = self.hub
        app[DIALECT_KEY] = self.dialect
        app.add_routes([web.get("/helios/state", debug_state)])
        app.add_routes(self.dialect.routes())
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        addresses = self._runner.addresses  # the bound (host, port, ...): port 0 picks a free one
        if addresses:
            self.port = addresses[0][1]
        self.start_clock()
        self._tasks.append(asyncio.ensure_future(self._tick_loop()))
        if self.faults.disconnect_s:
            self._tasks.append(asyncio.ensure_future(self._disconnect_loop()))

    async def stop(self) -> None:
        self._stopping.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.hub.close_all(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _disconnect_loop(self) -> None:
        while True:
            await asyncio.sleep(self.faults.disconnect_s)
            if self.elapsed_s() < self.faults.after_s:
                continue
            n = await self.hub.close_all(code=1001)
            self.log.disconnects += 1
            self.faults.counts["disconnect"] = self.faults.counts.get("disconnect", 0) + 1
            log.info("fault: closed %d websocket connection(s)", n)

    async def _tick_loop(self) -> None:
        while True:
            now = self.now_us()
            if not self.frozen and now >= self.next_step_us:
                steps = 0
                while now >= self.next_step_us and steps < 50:
                    self.step(self.next_step_us)
                    self.next_step_us += STEP_US
                    steps += 1
                if steps == 50:  # far behind (the machine stalled): skip ahead, the market jumps
                    self.next_step_us = max(self.next_step_us, now - now % STEP_US)
            delay = (self.next_step_us - self.now_us()) / 1e6
            await asyncio.sleep(min(max(delay, 0.005), 0.1))

    # ---- one 100 ms step -----------------------------------------------------------------------
    def step(self, t_us: int) -> None:
        """Advance the market to ``t_us``, close one diff per symbol and publish everything."""
        self.source.advance(t_us)
        ts_ms = t_us // 1000
        elapsed = self.elapsed_s()
        faults = self.faults
        for st in self.source.states:
            sym = st.inst.symbol
            if faults:
                undo = self._uncross.get(sym)
                if undo is not None and ts_ms >= undo[2]:
                    del self._uncross[sym]
                    st.set_level(True, undo[0], undo[1])
                if st._pend_ops and faults.fires("gap", sym, elapsed):
                    st.skip_ids(faults.rng("gap", sym).randint(1, 5))
                if st._pend_ops and sym not in self._uncross and faults.fires("crossed", sym, elapsed):
                    ask = st.best_ask()
                    if ask:
                        price = ask + st.inst.tick_units
                        self._uncross[sym] = (price, st.bids.get(price, 0), ts_ms + CROSSED_MS)
                        st.set_level(True, price, st.inst.step_units * 7)
            batch = st.flush(ts_ms)
            self._publish(st, batch, ts_ms, elapsed)
            if "stale" in faults.rates:
                self.remember_snapshot(st, t_us)

    def _publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        """Hand one step's batch to the dialect, and keep what was sent for the tests (``record``)."""
        if batch.diff is not None:
            self.log.diffs_published += 1
        self.log.trades_published += len(batch.trades)
        self.dialect.publish(st, batch, ts_ms, elapsed)
        if self.record:
            sym = st.inst.symbol
            if batch.diff is not None:
                books = self.log.books.setdefault(sym, {})
                books[self.dialect.update_id(st)] = st.top_floats(self.record_depth)
                if len(books) > self.record_history:
                    for k in list(books)[: len(books) - self.record_history]:
                        del books[k]
            if batch.trades:
                self.log.trade_amounts.setdefault(sym, {}).update(
                    (t.trade_id, st.inst.qty(t.qty_units)) for t in batch.trades)


async def debug_state(request: web.Request) -> web.Response:
    """``/helios/state?symbol=BTC/USDT&limit=100``: the server's book (with the venue's own last update id as
    ``lastUpdateId``) and trade counters, on every venue (for tests)."""
    app = request.app[APP_KEY]
    dialect = request.app[DIALECT_KEY]
    symbol = request.query.get("symbol", "")
    try:
        st = app.state(symbol)
    except KeyError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    limit = int(request.query.get("limit", "100"))
    bids, asks = st.top_floats(limit)
    return web.json_response({
        "symbol": symbol, "venue": dialect.name, "lastUpdateId": dialect.update_id(st), "bids": bids, "asks": asks,
        "next_trade_id": st.next_trade_id, "faults": app.faults.counts, "frozen": app.frozen,
    })


def ccxt_urls(base: str, venue: str = "binance") -> dict[str, Any]:
    """ccxt ``urls`` override for a local exchange of ``venue`` at ``base`` (``http://127.0.0.1:PORT``)."""
    return dialect_class(venue).ccxt_urls(base)


def ccxt_config(base: str, market: str = "spot", venue: str = "binance") -> dict[str, Any]:
    """A ccxt constructor config (also Freqtrade's ``exchange.ccxt_config``) for the local exchange."""
    return dialect_class(venue).ccxt_config(base, market)


class ServerHandle:
    """A server running on its own event loop in a background thread (see ``start_in_thread``)."""

    def __init__(self, server: ExchangeServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.server = server
        self.loop = loop
        self.thread = thread

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def log(self) -> ServerLog:
        return self.server.log

    def ccxt_urls(self) -> dict[str, Any]:
        return self.server.ccxt_urls()

    @property
    def venue(self) -> str:
        return self.server.venue

    def ccxt_config(self, market: str = "spot") -> dict[str, Any]:
        return self.server.ccxt_config(market)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (a consistent view between two steps) and return its result."""
        async def run() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def book(self, symbol: str, limit: int = 100) -> tuple[int, list[list[float]], list[list[float]]]:
        """(the venue's last update id, bids, asks): the server's top ``limit`` levels as the floats a client
        parses."""
        def read() -> tuple[int, list[list[float]], list[list[float]]]:
            st = self.server.state(symbol)
            bids, asks = st.top_floats(limit)
            return self.server.dialect.update_id(st), bids, asks
        return self.call(read)

    def trade_ids(self, symbol: str) -> list[int]:
        """Every trade id published for ``symbol`` (needs ``record=True``)."""
        return self.call(lambda: list(self.server.log.trade_amounts.get(symbol, {})))

    def trade_amounts(self, symbol: str) -> dict[int, float]:
        """Every published trade's amount in base units by trade id (needs ``record=True``)."""
        return self.call(lambda: dict(self.server.log.trade_amounts.get(symbol, {})))

    def book_at(self, symbol: str, update_id: int) -> tuple[list[list[float]], list[list[float]]] | None:
        """The server's top levels right after the update with the venue's id ``update_id`` (needs
        ``record=True``)."""
        return self.call(lambda: self.server.log.books.get(symbol, {}).get(update_id))

    def fault_counts(self) -> dict[str, int]:
        return self.call(lambda: dict(self.server.faults.counts))

    def freeze(self) -> None:
        self.call(self.server.freeze)

    def resume(self) -> None:
        self.call(self.server.resume)

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop)
        with contextlib.suppress(Exception):
            fut.result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(source: MarketSource, **kwargs: Any) -> ServerHandle:
    """Start an ``ExchangeServer(source, **kwargs)`` on a daemon thread; returns once it listens."""
    loop = asyncio.new_event_loop()
    server_box: list[ExchangeServer] = []
    ready = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = ExchangeServer(source, **kwargs)
            server_box.append(server)
            loop.run_until_complete(server.start())
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=run, name="helios-exchange", daemon=True)
    thread.start()
    ready.wait(timeout=60)
    if errors:
        raise errors[0]
    return ServerHandle(server_box[0], loop, thread)


def startup_line(server: ExchangeServer) -> str:
    """The line ``helios exchange`` prints once listening: venue, base URLs and the ccxt override to paste."""
    d = server.dialect
    markets = sorted({s.inst.market for s in server.source.states})
    return (f"helios exchange: listening on {server.url} as {d.name} ({d.endpoints(server.url)}); symbols "
            f"{', '.join(s.inst.symbol for s in server.source.states)}"
            + "".join(f"\nhelios exchange: exchange.name {d.ccxt_id(m)}, exchange.ccxt_config for Freqtrade / ccxt "
                      f"({m}): {json.dumps(d.ccxt_config(server.url, m))}" for m in markets))
