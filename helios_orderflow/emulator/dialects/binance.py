"""Binance (spot ``/api/v3`` + ``/stream``, USD-M futures ``/fapi`` + ``/fstream``) on the local exchange:
diffs ``@depth@100ms`` with ``U``/``u`` (``pu`` on futures), ``@depth`` (1000 ms), ``@trade``, ``@aggTrade``,
``@bookTicker``, ``@kline_<interval>``; REST in ``binance_rest``, the websocket protocol in ``binance_ws``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from helios_orderflow.core.symbols import binance_wire
from helios_orderflow.emulator.app import MarketApp, dumps
from helios_orderflow.emulator.dialects import binance_rest, binance_ws
from helios_orderflow.emulator.dialects.base import Dialect, Middleware
from helios_orderflow.emulator.hub import Hub
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import INTERVALS, MINUTE_MS
from helios_orderflow.emulator.market import Batch, Diff, MarketState


@dataclass(slots=True)
class _SlowDiff:
    """``@depth`` (1000 ms): the 100 ms diffs of one second merged, the last size per price winning."""

    first_id: int = 0
    prev_id: int = 0
    last_id: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    empty: bool = True


class Binance(Dialect):
    name = "binance"
    markets = ("spot", "linear")

    def __init__(self, app: MarketApp, hub: Hub) -> None:
        super().__init__(app, hub)
        self._slow: dict[str, _SlowDiff] = {}  # @depth (1000 ms) accumulators
        self._kline_sent: dict[tuple[str, str], tuple[int, int]] = {}

    @staticmethod
    def wire(inst: Instrument) -> str:
        return binance_wire(inst.symbol)

    @classmethod
    def ccxt_id(cls, market: str) -> str:
        return "binance"  # ccxt's binance client serves both; Freqtrade names the venue binance for futures too

    @classmethod
    def ccxt_urls(cls, base: str) -> dict[str, Any]:
        wsb = base.replace("http://", "ws://", 1)
        return {"api": {
            "public": f"{base}/api/v3", "private": f"{base}/api/v3", "v1": f"{base}/api/v1",
            "sapi": f"{base}/sapi/v1", "fapiPublic": f"{base}/fapi/v1", "fapiPublicV2": f"{base}/fapi/v2",
            "fapiPublicV3": f"{base}/fapi/v3", "fapiPrivate": f"{base}/fapi/v1", "fapiPrivateV2": f"{base}/fapi/v2",
            "fapiPrivateV3": f"{base}/fapi/v3", "fapiData": f"{base}/futures/data",
            "ws": {"spot": f"{wsb}/stream", "margin": f"{wsb}/stream", "linear": f"{wsb}/fstream/ws"},
        }}

    @classmethod
    def ccxt_options(cls, market: str) -> dict[str, Any]:
        return {"fetchMarkets": {"types": ["spot"] if market == "spot" else ["linear"]}}

    @classmethod
    def endpoints(cls, base: str) -> str:
        wsb = base.replace("http://", "ws://", 1)
        return f"REST {base}/api/v3 and {base}/fapi/v1; websockets {wsb}/stream, {wsb}/ws, {wsb}/fstream/ws"

    def routes(self) -> list[web.RouteDef]:
        return [*binance_rest.routes(), *binance_ws.routes()]  # the catch-all websocket route last

    def middlewares(self) -> list[Middleware]:
        return [binance_rest.binance_errors]

    # ---- one step's messages --------------------------------------------------------------------------
    def _diff_payload(self, inst: Instrument, d: Diff, ts_ms: int) -> str:
        fp, fq = inst.format_price, inst.format_qty
        b = ",".join(f'["{fp(p)}","{fq(q)}"]' for p, q in d.bids)
        a = ",".join(f'["{fp(p)}","{fq(q)}"]' for p, q in d.asks)
        wire = self.wire(inst)
        if inst.market == "spot":
            return (f'{{"e":"depthUpdate","E":{ts_ms},"s":"{wire}","U":{d.first_id},"u":{d.last_id},'
                    f'"b":[{b}],"a":[{a}]}}')
        return (f'{{"e":"depthUpdate","E":{ts_ms},"T":{ts_ms},"s":"{wire}","U":{d.first_id},'
                f'"u":{d.last_id},"pu":{d.prev_id},"b":[{b}],"a":[{a}]}}')

    def publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        inst = st.inst
        hub = self.hub
        market, sym, wire = inst.market, inst.symbol, self.wire(inst)
        sid = wire.lower()
        if batch.diff is not None:
            d = batch.diff
            self.send_diff(st, f"{sid}@depth@100ms", self._diff_payload(inst, d, ts_ms), elapsed)
            if hub.subscribers(market, f"{sid}@depth") or sym in self._slow:
                self._accumulate_slow(st, d, ts_ms)
        if batch.trades:
            fp, fq = inst.format_price, inst.format_qty
            stream = f"{sid}@trade"
            if hub.subscribers(market, stream):
                for t in batch.trades:
                    m = "true" if t.buyer_is_maker else "false"
                    if market == "spot":
                        text = (f'{{"e":"trade","E":{ts_ms},"s":"{wire}","t":{t.trade_id},'
                                f'"p":"{fp(t.price_units)}","q":"{fq(t.qty_units)}","T":{t.ts_ms},"m":{m},"M":true}}')
                    else:
                        text = (f'{{"e":"trade","E":{ts_ms},"T":{t.ts_ms},"s":"{wire}","t":{t.trade_id},'
                                f'"p":"{fp(t.price_units)}","q":"{fq(t.qty_units)}","X":"MARKET","m":{m}}}')
                    hub.publish(market, stream, text)
            stream = f"{sid}@aggTrade"
            if hub.subscribers(market, stream):
                for a in batch.agg_trades:
                    m = "true" if a.buyer_is_maker else "false"
                    tail = ',"M":true' if market == "spot" else ""
                    hub.publish(market, stream, (
                        f'{{"e":"aggTrade","E":{ts_ms},"s":"{wire}","a":{a.agg_id},"p":"{fp(a.price_units)}",'
                        f'"q":"{fq(a.qty_units)}","f":{a.first_trade_id},"l":{a.last_trade_id},"T":{a.ts_ms},'
                        f'"m":{m}{tail}}}'))
        if batch.bbo_changed:
            stream = f"{sid}@bookTicker"
            if hub.subscribers(market, stream):
                b = st.bbo()
                head = f'"e":"bookTicker","u":{st.last_update_id},"E":{ts_ms},"T":{ts_ms},' if market == "linear" else (
                    f'"u":{st.last_update_id},')
                hub.publish(market, stream, (
                    f'{{{head}"s":"{wire}","b":"{inst.format_price(b[0])}","B":"{inst.format_qty(b[1])}",'
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
            self.hub.publish(inst.market, f"{self.wire(inst).lower()}@depth", self._diff_payload(inst, merged, ts_ms))

    def _publish_klines(self, st: MarketState, ts_ms: int, traded: bool) -> None:
        inst = st.inst
        sid = self.wire(inst).lower()
        for interval, minutes in INTERVALS.items():
            stream = f"{sid}@kline_{interval}"
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
        self.app.log.kline_messages += 1
        i = st.inst
        wire = self.wire(i)
        close_ms = c[0] + INTERVALS[interval] * MINUTE_MS - 1
        k = {"t": c[0], "T": close_ms, "s": wire, "i": interval, "f": c[10], "L": c[11],
             "o": i.format_price(c[1]), "c": i.format_price(c[4]), "h": i.format_price(c[2]),
             "l": i.format_price(c[3]), "v": i.format_qty(c[5]), "n": c[7], "x": closed, "q": f"{c[6]:.8f}",
             "V": i.format_qty(c[8]), "Q": f"{c[9]:.8f}", "B": "0"}
        return dumps({"e": "kline", "E": ts_ms, "s": wire, "k": k})


DIALECT = Binance
