"""The local Binance-compatible exchange: an aiohttp app serving REST and websockets from a market source.

Time: the server runs on simulated time (see ``app.py``: wall-clock time minus the total time it was
frozen). Every 100 ms of simulated time (the grid counted from the source's ``origin_us``) it advances the
source, closes one diff per symbol and publishes diffs, trades, aggregate trades, best bid/offer and candles
to the subscribed websocket clients, applying the per-diff faults on the way.

Imports go one way: this module serves the handlers of ``rest.py`` and ``ws.py``, which read the state they
share with it from ``app.py`` (``MarketApp``, which ``ExchangeServer`` is).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from helios_orderflow.emulator import rest, ws
from helios_orderflow.emulator.app import APP_KEY, MarketApp, MarketSource, ServerLog, dumps
from helios_orderflow.emulator.faults import FaultPlan
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import INTERVALS, MINUTE_MS
from helios_orderflow.emulator.market import Batch, Diff, MarketState

log = logging.getLogger(__name__)
STEP_US = 100_000  # the diff grid: one @depth@100ms message per symbol per step at most
CROSSED_MS = 1000  # how long the ``crossed`` fault keeps a bid above the best ask
T = TypeVar("T")


@dataclass(slots=True)
class _SlowDiff:
    """``@depth`` (1000 ms): the 100 ms diffs of one second merged, the last size per price winning."""

    first_id: int = 0
    prev_id: int = 0
    last_id: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    empty: bool = True


class ExchangeServer(MarketApp):
    """REST + websocket server over a market source. Start with ``await start()``, stop with ``stop()``.

    The market, clock, faults and log it shares with the handlers are ``MarketApp``'s (``app.py``);
    ``faults``: an empty plan is kept as given, so a caller can switch faults on later.
    """

    def __init__(self, source: MarketSource, host: str = "127.0.0.1", port: int = 0, faults: FaultPlan | None = None,
                 ping_interval_s: float = 20.0, record: bool = False, record_depth: int = 100,
                 record_history: int = 3000) -> None:
        super().__init__(source, faults=faults, ping_interval_s=ping_interval_s)
        self.host = host
        self.port = port
        self.record = record
        self.record_depth = record_depth
        self.record_history = record_history
        self.hub = ws.Hub(self)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._held: dict[str, str] = {}  # reorder fault: a diff waiting to go out after the next one
        self._uncross: dict[str, tuple[int, int, int]] = {}  # crossed fault: (price, qty to restore, until ms)
        self._slow: dict[str, _SlowDiff] = {}  # @depth (1000 ms) accumulators
        self._kline_sent: dict[tuple[str, str], tuple[int, int]] = {}
        self.next_step_us = source.origin_us + STEP_US

    # ---- urls ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ccxt_urls(self) -> dict[str, Any]:
        return ccxt_urls(self.url)

    # ---- lifecycle -----------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[rest.binance_errors])
        app[APP_KEY] = self
        app[ws.HUB_KEY] = self.hub
        app.add_routes(rest.routes())
        app.add_routes(ws.routes())  # the catch-all websocket route last
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
        acc = self._slow.get(st.inst.symbol)
        if acc is None:
            acc = self._slow[st.inst.symbol] = _SlowDiff()
        if acc.empty:
            acc.first_id, acc.prev_id, acc.empty = d.first_id, d.prev_id, False
        acc.bids.update(d.bids)
        acc.asks.update(d.asks)
        acc.last_id = d.last_id
        if ts_ms % 1000 == 0:
            inst = st.inst
            merged = Diff(acc.first_id, acc.last_id, acc.prev_id, ts_ms, sorted(acc.bids.items(), reverse=True),
                          sorted(acc.asks.items()))
            self._slow[st.inst.symbol] = _SlowDiff()
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
        return dumps({"e": "kline", "E": ts_ms, "s": i.wire, "k": k})


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
