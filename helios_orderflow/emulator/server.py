"""The local Binance-compatible exchange: an aiohttp app serving REST and websockets from a market source.

Time: the server runs on simulated time = wall-clock time minus the total time it was frozen
(``freeze``/``resume``, for tests). Every 100 ms of simulated time (the grid counted from the source's
``origin_us``) it advances the source, closes one diff per symbol and publishes diffs, trades, aggregate
trades, best bid/offer and candles to the subscribed websocket clients.

In-process use (tests, the live-feed helper)::

    from helios_orderflow.emulator import start_in_thread, SyntheticSource
    handle = start_in_thread(SyntheticSource(["BTC/USDT", "ETH/USDT"], seed=1))
    exchange = ccxt.pro.binance(handle.ccxt_config())   # or deep-merge handle.ccxt_config() into yours
    ...
    handle.book("BTC/USDT", 100)   # (lastUpdateId, bids, asks) as the server holds them
    handle.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web

from helios_orderflow.emulator.faults import FaultPlan
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import INTERVALS, MINUTE_MS
from helios_orderflow.emulator.market import Batch, Diff, MarketState

from . import rest, ws

log = logging.getLogger(__name__)
STEP_US = 100_000  # the diff grid: one @depth@100ms message per symbol per step at most
CROSSED_MS = 1000  # how long the ``crossed`` fault keeps a bid above the best ask
T = TypeVar("T")


class MarketSource(Protocol):
    """What drives the books: the synthetic model or a recording replay."""

    origin_us: int
    states: list[MarketState]

    def advance(self, until_us: int) -> None:
        """Write every change with time < ``until_us`` into ``states`` (the server flushes them)."""


@dataclass
class ServerLog:
    """What the server sent, for tests to compare against what a client built."""

    ws_connections: int = 0
    rest_requests: int = 0
    #: REST requests by path (``/api/v3/depth`` counts snapshot fetches, i.e. client resyncs)
    rest_by_path: dict[str, int] = field(default_factory=dict)
    diffs_published: int = 0
    trades_published: int = 0
    disconnects: int = 0
    kline_messages: int = 0
    #: stream name -> SUBSCRIBE count (by any client)
    subscriptions: dict[str, int] = field(default_factory=dict)
    #: symbol -> every trade id published on @trade (only with ``record=True``)
    trade_ids: dict[str, list[int]] = field(default_factory=dict)
    #: symbol -> last update id -> (bids, asks) top ``record_depth`` as floats (only with ``record=True``)
    books: dict[str, dict[int, tuple[list[list[float]], list[list[float]]]]] = field(default_factory=dict)


class ExchangeServer:
    """REST + websocket server over a market source. Start with ``await start()``, stop with ``stop()``."""

    def __init__(self, source: MarketSource, host: str = "127.0.0.1", port: int = 0, faults: FaultPlan | None = None,
                 ping_interval_s: float = 20.0, record: bool = False, record_depth: int = 100,
                 record_history: int = 3000) -> None:
        self.source = source
        self.host = host
        self.port = port
        # An empty plan is falsy: keep the caller's object so it can switch faults on later.
        self.faults = faults if faults is not None else FaultPlan()
        self.ping_interval_s = ping_interval_s
        self.record = record
        self.record_depth = record_depth
        self.record_history = record_history
        self.log = ServerLog()
        self.hub = ws.Hub(self)
        self._by_wire: dict[tuple[str, str], MarketState] = {}
        for st in source.states:
            self._by_wire[(st.inst.market, st.inst.wire)] = st
        self._offset_us = 0  # wall - simulated
        self._frozen_at: float | None = None
        self._started_wall = time.time()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._held: dict[str, str] = {}  # reorder fault: a diff waiting to go out after the next one
        self._uncross: dict[str, tuple[int, int, int]] = {}  # crossed fault: (price, qty to restore, until ms)
        self._slow: dict[str, dict[int, int | str]] = {}  # @depth (1000 ms) accumulators
        self._kline_sent: dict[tuple[str, str], tuple[int, int]] = {}
        self._stale: dict[str, deque] = {}
        self.next_step_us = source.origin_us + STEP_US

    # ---- time ----------------------------------------------------------------------------------
    def now_us(self) -> int:
        wall = self._frozen_at if self._frozen_at is not None else time.time()
        return int(wall * 1e6) - self._offset_us

    def now_ms(self) -> int:
        return self.now_us() // 1000

    def elapsed_s(self) -> float:
        return time.time() - self._started_wall

    def freeze(self) -> None:
        """Stop the market (no more changes) until ``resume``; REST and websockets keep serving."""
        if self._frozen_at is None:
            self._frozen_at = time.time()

    def resume(self) -> None:
        if self._frozen_at is not None:
            self._offset_us += int((time.time() - self._frozen_at) * 1e6)
            self._frozen_at = None

    # ---- lookups -------------------------------------------------------------------------------
    def state_by_wire(self, market: str, wire: str) -> MarketState | None:
        return self._by_wire.get((market, wire))

    def states_of(self, market: str) -> list[MarketState]:
        return [s for s in self.source.states if s.inst.market == market]

    def state(self, symbol: str) -> MarketState:
        for s in self.source.states:
            if s.inst.symbol == symbol:
                return s
        raise KeyError(f"symbol {symbol!r} is not listed; listed: {[s.inst.symbol for s in self.source.states]}")

    def noping_active(self, conn: ws.Connection) -> bool:
        return bool(self.faults.noping_s) and self.elapsed_s() >= self.faults.after_s and (
            time.monotonic() - conn.opened >= self.faults.noping_s)

    def depth_snapshot(self, st: MarketState, limit: int) -> tuple[int, list, list]:
        hist = self._stale.get(st.inst.symbol)
        if hist and self.faults.fires("stale", f"depth:{st.inst.symbol}", self.elapsed_s()):
            now = self.now_us()
            for t_us, snap in hist:
                if now - t_us >= 2_000_000:
                    return snap[0], snap[1][:limit], snap[2][:limit]
        bids, asks = st.top(limit)
        return st.last_update_id, bids, asks

    # ---- urls ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ccxt_urls(self) -> dict[str, Any]:
        return ccxt_urls(self.url)

    # ---- lifecycle -----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[rest.binance_errors])
        app[ws.SERVER_KEY] = self
        app.add_routes(rest.routes(self))
        app.add_routes([web.get("/helios/state", _debug_state)])
        app.router.add_route("GET", "/{tail:.*}", _ws_or_404)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._started_wall = time.time()
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
            if self._frozen_at is None and now >= self.next_step_us:
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
                self._remember_snapshot(st, t_us)

    def _remember_snapshot(self, st: MarketState, t_us: int) -> None:
        hist = self._stale.setdefault(st.inst.symbol, deque(maxlen=6))
        if not hist or t_us - hist[-1][0] >= 1_000_000:
            bids, asks = st.top(1000)
            hist.append((t_us, (st.last_update_id, bids, asks)))
            # newest last; the depth fault walks from oldest to find one >= 2 s old

    def _diff_payload(self, inst: Instrument, d: Diff, ts_ms: int) -> str:
        fp, fq = inst.format_price, inst.format_qty
        b = ",".join(f'["{fp(p)}","{fq(q)}"]' for p, q in d.bids)
        a = ",".join(f'["{fp(p)}","{fq(q)}"]' for p, q in d.asks)
        if inst.market == "spot":
            return (f'{{"e":"depthUpdate","E":{ts_ms},"s":"{inst.wire}","U":{d.first_id},"u":{d.last_id},'
                    f'"b":[{b}],"a":[{a}]}}')
        return (f'{{"e":"depthUpdate","E":{ts_ms},"T":{ts_ms},"s":"{inst.wire}","U":{d.first_id},'
                f'"u":{d.last_id},"pu":{d.prev_id},"b":[{b}],"a":[{a}]}}')

    def _publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        inst = st.inst
        hub = self.hub
        market, sid, sym = inst.market, inst.stream_id, inst.symbol
        faults = self.faults
        if batch.diff is not None:
            d = batch.diff
            self.log.diffs_published += 1
            stream = f"{sid}@depth@100ms"
            payload = self._diff_payload(inst, d, ts_ms)
            if faults:
                if faults.fires("malformed", sym, elapsed):
                    hub.publish_raw(market, stream, payload[: len(payload) // 2])
                held = self._held.pop(sym, None)
                if faults.fires("drop", sym, elapsed):
                    pass
                elif held is None and faults.fires("reorder", sym, elapsed):
                    self._held[sym] = payload
                else:
                    hub.publish(market, stream, payload)
                    if faults.fires("dup", sym, elapsed):
                        hub.publish(market, stream, payload)
                if held is not None:
                    hub.publish(market, stream, held)
            else:
                hub.publish(market, stream, payload)
            if hub.subscribers(market, f"{sid}@depth") or sym in self._slow:
                self._accumulate_slow(st, d, ts_ms)
            if self.record:
                self.log.books.setdefault(sym, {})[d.last_id] = st.top_floats(self.record_depth)
                books = self.log.books[sym]
                if len(books) > self.record_history:
                    for k in list(books)[: len(books) - self.record_history]:
                        del books[k]
        if batch.trades:
            self.log.trades_published += len(batch.trades)
            fp, fq = inst.format_price, inst.format_qty
            stream = f"{sid}@trade"
            if hub.subscribers(market, stream):
                for t in batch.trades:
                    m = "true" if t.buyer_is_maker else "false"
                    if market == "spot":
                        text = (f'{{"e":"trade","E":{ts_ms},"s":"{inst.wire}","t":{t.trade_id},'
                                f'"p":"{fp(t.price_units)}","q":"{fq(t.qty_units)}","T":{t.ts_ms},"m":{m},"M":true}}')
                    else:
                        text = (f'{{"e":"trade","E":{ts_ms},"T":{t.ts_ms},"s":"{inst.wire}","t":{t.trade_id},'
                                f'"p":"{fp(t.price_units)}","q":"{fq(t.qty_units)}","X":"MARKET","m":{m}}}')
                    hub.publish(market, stream, text)
            if self.record:
                self.log.trade_ids.setdefault(sym, []).extend(t.trade_id for t in batch.trades)
            stream = f"{sid}@aggTrade"
            if hub.subscribers(market, stream):
                for a in batch.agg_trades:
                    m = "true" if a.buyer_is_maker else "false"
                    tail = ',"M":true' if market == "spot" else ""
                    hub.publish(market, stream, (
                        f'{{"e":"aggTrade","E":{ts_ms},"s":"{inst.wire}","a":{a.agg_id},"p":"{fp(a.price_units)}",'
                        f'"q":"{fq(a.qty_units)}","f":{a.first_trade_id},"l":{a.last_trade_id},"T":{a.ts_ms},'
                        f'"m":{m}{tail}}}'))
        if batch.bbo_changed:
            stream = f"{sid}@bookTicker"
            if hub.subscribers(market, stream):
                b = st.bbo()
                head = f'"e":"bookTicker","u":{st.last_update_id},"E":{ts_ms},"T":{ts_ms},' if market == "linear" else (
                    f'"u":{st.last_update_id},')
                hub.publish(market, stream, (
                    f'{{{head}"s":"{inst.wire}","b":"{inst.format_price(b[0])}","B":"{inst.format_qty(b[1])}",'
                    f'"a":"{inst.format_price(b[2])}","A":"{inst.format_qty(b[3])}"}}'))
        if ts_ms % 1000 == 0 or batch.trades:
            self._publish_klines(st, ts_ms, bool(batch.trades))

    def _accumulate_slow(self, st: MarketState, d: Diff, ts_ms: int) -> None:
        """@depth: the 100 ms diffs of one second merged (last size per price wins)."""
        acc = self._slow.setdefault(st.inst.symbol, {})
        if not acc:
            acc["U"] = d.first_id
            acc["pu"] = d.prev_id
        for p, q in d.bids:
            acc[("b", p)] = q  # type: ignore[index]
        for p, q in d.asks:
            acc[("a", p)] = q  # type: ignore[index]
        acc["u"] = d.last_id
        if ts_ms % 1000 == 0:
            inst = st.inst
            bids = sorted(((k[1], v) for k, v in acc.items() if isinstance(k, tuple) and k[0] == "b"), reverse=True)
            asks = sorted((k[1], v) for k, v in acc.items() if isinstance(k, tuple) and k[0] == "a")
            merged = Diff(int(acc["U"]), int(acc["u"]), int(acc["pu"]), ts_ms, bids, asks)  # type: ignore[arg-type]
            self._slow[st.inst.symbol] = {}
            self.hub.publish(inst.market, f"{inst.stream_id}@depth", self._diff_payload(inst, merged, ts_ms))

    def _publish_klines(self, st: MarketState, ts_ms: int, traded: bool) -> None:
        inst = st.inst
        for interval, minutes in INTERVALS.items():
            stream = f"{inst.stream_id}@kline_{interval}"
            if not self.hub.subscribers(inst.market, stream):
                continue
            st.candles.ensure_until(ts_ms)
            bucket = (ts_ms // MINUTE_MS) // minutes
            key = (inst.symbol, interval)
            last = self._kline_sent.get(key)
            if last is not None and last[0] != bucket:
                closed = st.candles.candle(minutes, last[0])
                if closed is not None:
                    self.hub.publish(inst.market, stream, self._kline_payload(st, closed, interval, ts_ms, True))
            if last is None or last[0] != bucket or traded or ts_ms - last[1] >= 1000:
                cur = st.candles.candle(minutes, bucket)
                if cur is not None:
                    self.hub.publish(inst.market, stream, self._kline_payload(st, cur, interval, ts_ms, False))
                self._kline_sent[key] = (bucket, ts_ms)

    def _kline_payload(self, st: MarketState, c: list, interval: str, ts_ms: int, closed: bool) -> str:
        self.log.kline_messages += 1
        i = st.inst
        close_ms = c[0] + INTERVALS[interval] * MINUTE_MS - 1
        k = {"t": c[0], "T": close_ms, "s": i.wire, "i": interval, "f": c[10], "L": c[11],
             "o": i.format_price(c[1]), "c": i.format_price(c[4]), "h": i.format_price(c[2]),
             "l": i.format_price(c[3]), "v": i.format_qty(c[5]), "n": c[7], "x": closed, "q": f"{c[6]:.8f}",
             "V": i.format_qty(c[8]), "Q": f"{c[9]:.8f}", "B": "0"}
        return ws.dumps({"e": "kline", "E": ts_ms, "s": i.wire, "k": k})


async def _ws_or_404(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await ws.handle_ws(request)
    raise web.HTTPNotFound()


async def _debug_state(request: web.Request) -> web.Response:
    """``/helios/state?symbol=BTC/USDT&limit=100``: the server's book and trade counters (for tests)."""
    server: ExchangeServer = request.app[ws.SERVER_KEY]
    symbol = request.query.get("symbol", "")
    try:
        st = server.state(symbol)
    except KeyError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    limit = int(request.query.get("limit", "100"))
    bids, asks = st.top_floats(limit)
    return web.json_response({
        "symbol": symbol, "lastUpdateId": st.last_update_id, "bids": bids, "asks": asks,
        "next_trade_id": st.next_trade_id, "faults": server.faults.counts, "frozen": server._frozen_at is not None,
    })


def ccxt_urls(base: str) -> dict[str, Any]:
    """ccxt ``urls`` override for a local exchange at ``base`` (``http://127.0.0.1:PORT``), for both
    ``ccxt.binance`` and ``ccxt.pro.binance`` (spot and USD-M futures)."""
    wsb = base.replace("http://", "ws://", 1)
    return {"api": {
        "public": f"{base}/api/v3", "private": f"{base}/api/v3", "v1": f"{base}/api/v1",
        "sapi": f"{base}/sapi/v1", "fapiPublic": f"{base}/fapi/v1", "fapiPublicV2": f"{base}/fapi/v2",
        "fapiPublicV3": f"{base}/fapi/v3", "fapiPrivate": f"{base}/fapi/v1", "fapiPrivateV2": f"{base}/fapi/v2",
        "fapiPrivateV3": f"{base}/fapi/v3", "fapiData": f"{base}/futures/data",
        "ws": {"spot": f"{wsb}/stream", "margin": f"{wsb}/stream", "linear": f"{wsb}/fstream/ws"},
    }}


def ccxt_config(base: str, market: str = "spot") -> dict[str, Any]:
    """A ccxt constructor config (also Freqtrade's ``exchange.ccxt_config``) for the local exchange."""
    types = ["spot"] if market == "spot" else ["linear"]
    return {"urls": ccxt_urls(base), "options": {"fetchMarkets": {"types": types}}}


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

    def ccxt_config(self, market: str = "spot") -> dict[str, Any]:
        return ccxt_config(self.url, market)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (a consistent view between two steps) and return its result."""
        async def run() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def book(self, symbol: str, limit: int = 100) -> tuple[int, list[list[float]], list[list[float]]]:
        """(lastUpdateId, bids, asks): the server's top ``limit`` levels as the floats a client parses."""
        def read() -> tuple[int, list[list[float]], list[list[float]]]:
            st = self.server.state(symbol)
            bids, asks = st.top_floats(limit)
            return st.last_update_id, bids, asks
        return self.call(read)

    def trade_ids(self, symbol: str) -> list[int]:
        """Every trade id published for ``symbol`` (needs ``record=True``)."""
        return self.call(lambda: list(self.server.log.trade_ids.get(symbol, [])))

    def book_at(self, symbol: str, update_id: int) -> tuple[list[list[float]], list[list[float]]] | None:
        """The server's top levels right after the diff ending at ``update_id`` (needs ``record=True``)."""
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
    """The line ``helios exchange`` prints once listening: base URLs and the ccxt override to paste."""
    wsb = server.url.replace("http://", "ws://", 1)
    markets = sorted({s.inst.market for s in server.source.states})
    return (f"helios exchange: listening on {server.url} (REST {server.url}/api/v3 and {server.url}/fapi/v1; "
            f"websockets {wsb}/stream, {wsb}/ws, {wsb}/fstream/ws); symbols "
            f"{', '.join(s.inst.symbol for s in server.source.states)}"
            + "".join(f"\nhelios exchange: exchange.ccxt_config for Freqtrade / ccxt ({m}): "
                      f"{json.dumps(ccxt_config(server.url, m))}" for m in markets))
