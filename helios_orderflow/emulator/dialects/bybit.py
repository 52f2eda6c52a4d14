"""Bybit v5 (spot and USDT linear perpetuals) on the local exchange: the public REST market endpoints and the
public websockets, in Bybit's shapes (the fields ccxt's ``bybit.py`` and ``pro/bybit.py`` read).

REST (``/v5/market/...``, every answer in Bybit's envelope ``{"retCode":0,"retMsg":"OK","result":{...},
"retExtInfo":{},"time":ms}``; errors as ``retCode`` 10001 with HTTP 200, as Bybit answers them):
``time``; ``instruments-info`` (``category=spot|linear``; ``lotSizeFilter``/``priceFilter`` from the
instrument; linear pages by ``limit``/``cursor`` with ``nextPageCursor`` as ccxt's loop expects, spot in one
page as on Bybit; ``inverse``/``option`` and ``status=PreLaunch`` are empty lists, which is what ccxt asks
for besides); ``orderbook`` (spot 1..200, default 1; linear 1..500, default 25; limits above are clamped);
``kline`` and, for linear, ``mark-price-kline``/``index-price-kline`` (the same candles; intervals 1, 3, 5,
15, 30, 60, 120, 240, 360, 720, D; newest first; from ``start`` forward, else the last ``limit`` up to
``end``); ``tickers``; ``recent-trade`` (newest first, spot at most 60, linear 1000); ``funding/history``
(linear, 0.01 % every 8 h).

Websockets ``/v5/public/spot`` and ``/v5/public/linear``: ``{"op":"subscribe","args":[...],"req_id":..}``
acked ``{"success":true,"ret_msg":"subscribe","conn_id":..,"req_id":..,"op":"subscribe"}`` (a bad topic
fails the whole request with ``success:false``; spot takes at most 10 args per request), ``unsubscribe``,
and the text heartbeat ``{"op":"ping"}`` answered ``{"success":true,"ret_msg":"pong",..,"op":"ping"}``.
Topics:

- ``orderbook.{1,50,200,1000}.{symbol}``: a ``snapshot`` right after the subscription, then ``delta``s
  (``data: {s, b, a, u, seq}``, ``ts``, ``cts``). Each topic is the top N of the book: the snapshot holds the
  best N levels, a delta sends every level of the top N that changed, a level that enters the top N with its
  size and one that leaves it as size ``"0"``, so a client that applies them holds exactly the top N. Depths
  1 and 50 are pushed every 100 ms step, 200 every step on linear and every second step (200 ms) on spot,
  1000 every second step; nothing is sent for a step that left the topic's top N unchanged. Depth 1 sends
  only snapshots (one per change, and the same one again, same ``u``, after 3 s without change), as Bybit.
- ``publicTrade.{symbol}``: one message per step with that step's trades (``i`` id, ``T``, ``p``, ``v``,
  ``S`` the taker's side, ``BT``, ``seq``; ``L`` on linear). Spot ``i`` is the numeric trade id as Bybit
  sends it; linear ``i`` is a UUID on Bybit, here a UUID-shaped string whose last group is the trade id in hex
  (so tests can check the order; nothing downstream may rely on it).
- ``tickers.{symbol}``: a snapshot on subscribing, then on every step with trades or a new best bid/ask
  spot snapshots and linear deltas (every field that moves, where Bybit sends only the changed ones). Spot
  tickers carry no best bid/ask (as on Bybit).
- ``kline.{interval}.{symbol}``: the open candle each second and on trades, the closed one with
  ``confirm:true`` when its interval ends.

Sequence semantics: ``u`` is a per-topic message counter (Bybit increments it by one per message of a
topic; it starts at 1 here, as after a Bybit service restart); ``seq`` is the market's cross sequence
(``MarketState.last_update_id``). ``update_id(st)`` (``/helios/state``, ``ServerHandle.book_at``) is the
``u`` of ``orderbook.50``, the depth ccxt subscribes by default: a book recorded under it is exact for its
top 50 levels (the server records the top 100 after every diff, and a diff that changed only levels below
the 50th sends nothing on that topic). When the server records (``record=True``), ``u_at(symbol, ts_ms)``
gives that ``u`` for the message time ``ts`` of every step, which is how a test matches ccxt's book (which
carries the message's ``ts`` as its timestamp but no id) to ``book_at``.

How each fault shows on Bybit here:

- ``drop``/``reorder``/``dup``/``malformed``: on each ``orderbook.N`` message (opportunities and the
  reorder hold counted per topic, so a held message comes after the next message of its own topic): a ``u``
  that skips one, goes back, repeats, or a truncated frame. ccxt 4.5.90 applies deltas without looking at
  ``u``, so only a client that checks ``u`` (Helios' ``live/bybit_book_check``) sees drop and reorder; a
  repeated delta is harmless (it sets the same absolute sizes again).
- ``gap``: the market skips 1..5 ids; every orderbook topic of the symbol skips as many ``u`` (its next
  message's ``u`` jumps), and ``seq`` jumps.
- ``crossed``: the server's own book is crossed for 1 s; every topic shows it.
- ``disconnect``: every websocket is closed; ccxt reconnects, subscribes again and gets fresh snapshots.
- ``noping``: the text pings go unanswered; ccxt's keepalive times the connection out.
- ``rest429``: HTTP 429 with Bybit's ``retCode`` 10006 "Too many visits!" and its ``X-Bapi-Limit-*``
  headers (ccxt: ``RateLimitExceeded``); ``rest5xx``: HTTP 503 with the gateway's HTML page (ccxt:
  ``ExchangeNotAvailable``). On ccxt's path: ``load_markets`` (instruments-info), and Freqtrade's candles,
  tickers and order books.
- ``stale`` cannot apply: ccxt's Bybit book starts from the websocket snapshot, never from REST (the REST
  ``orderbook`` does serve the stale book, for a client that reads it).

Not done: inverse and option markets, private endpoints and channels, ``tickers_lt``/``liquidation``
topics, the 10 ms/20 ms push rates (the market steps every 100 ms), Bybit's real trade ids on linear
(UUIDs, see above), leverage tiers (``risk-limit``) and open interest (Freqtrade asks for them only in
futures mode), and Bybit's per-IP rate limits.
"""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.emulator.app import APP_KEY, MarketApp, dumps
from helios_orderflow.emulator.dialects.base import DIALECT_KEY, Dialect, Middleware
from helios_orderflow.emulator.hub import Connection, Hub, is_upgrade, serve
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import MINUTE_MS, Candle
from helios_orderflow.emulator.market import Batch, MarketState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

#: The orderbook depths Bybit v5 serves on spot and linear (its docs; ccxt 4.5.90 accepts 1, 50, 200, 1000).
DEPTHS: tuple[int, ...] = (1, 50, 200, 1000)
#: The depth whose ``u`` is ``update_id`` (ccxt's default for ``watch_order_book``).
ID_DEPTH = 50
#: Depths Bybit pushes every 200 ms (every second step here), by market.
SLOW_DEPTHS: dict[str, frozenset[int]] = {"spot": frozenset({200, 1000}), "linear": frozenset({1000})}
#: ``orderbook.1`` repeats its snapshot (same ``u``) after this long without a change.
LEVEL1_REPEAT_MS = 3000
#: REST ``orderbook`` limits by market: (max, default); the REST book's ``u`` is that of this depth's topic.
REST_BOOK_LIMITS: dict[str, tuple[int, int]] = {"spot": (200, 1), "linear": (500, 25)}
REST_BOOK_ID_DEPTH: dict[str, int] = {"spot": 200, "linear": 1000}
#: Bybit's kline intervals -> the candle book's names (W and M are not served).
KLINE_INTERVALS: dict[str, str] = {
    "1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h", "240": "4h",
    "360": "6h", "720": "12h", "D": "1d",
}
_KLINE_MINUTES = {"1": 1, "3": 3, "5": 5, "15": 15, "30": 30, "60": 60, "120": 120, "240": 240, "360": 360,
                  "720": 720, "D": 1440}
FUNDING_PERIOD_MS = 8 * 3_600_000
FUNDING_RATE = "0.0001"
SPOT_MAX_ARGS = 10  # Bybit spot: "args size >10" beyond this many topics in one request
#: linear ticker fields a delta leaves out (they do not move here)
_STATIC_TICKER_FIELDS = frozenset({"predictedDeliveryPrice", "basisRate", "deliveryFeeRate", "deliveryTime",
                                   "fundingRate", "nextFundingTime", "openInterest"})


class BybitError(Exception):
    """A request Bybit refuses: ``retCode``/``retMsg`` in its envelope, HTTP 200 as Bybit sends them."""

    def __init__(self, code: int, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


# ---- number formatting ------------------------------------------------------------------------------------
def _decimals(text: str) -> int:
    return len(text.partition(".")[2])


def _fmt(units: int, unit_decimals: int, out_decimals: int) -> str:
    """``units`` (10**-unit_decimals each) as a decimal string with ``out_decimals`` decimals; with more
    decimals when the value needs them (never rounded)."""
    if out_decimals < unit_decimals:
        q, r = divmod(units, 10 ** (unit_decimals - out_decimals))
        if r == 0:
            units, unit_decimals = q, out_decimals
    if unit_decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**unit_decimals)
    return f"{sign}{whole}.{frac:0{unit_decimals}d}"


def price_text(inst: Instrument, price_units: int) -> str:
    """A price as Bybit writes it: with the decimals of the tick (``60000.01`` for a 0.01 tick)."""
    return _fmt(price_units, inst.price_decimals, _decimals(inst.tick))


def qty_text(inst: Instrument, qty_units: int) -> str:
    """A size as Bybit writes it: with the decimals of the lot step; a removed level is ``"0"``."""
    if qty_units == 0:
        return "0"
    return _fmt(qty_units, inst.qty_decimals, _decimals(inst.step))


def linear_trade_id(inst: Instrument, trade_id: int) -> str:
    """The UUID-shaped ``i`` of a linear trade (Bybit sends UUIDs there); its last group is the id in hex."""
    return f"{zlib.crc32(inst.wire.encode()):08x}-0000-5000-8000-{trade_id:012x}"


def trade_number(trade_id: str) -> int:
    """The market's trade id behind a spot or linear ``i`` (the inverse of ``linear_trade_id``)."""
    return int(trade_id.rsplit("-", 1)[1], 16) if "-" in trade_id else int(trade_id)


# ---- per-symbol publishing state ----------------------------------------------------------------------------
@dataclass(slots=True)
class _BookTopic:
    """One ``orderbook.{depth}.{symbol}`` topic: what it last pushed (the top ``depth`` levels a client
    holds), its ``u``, and whether the market changed since."""

    depth: int
    u: int = 1
    seq: int = 0
    ts_ms: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)
    dirty: bool = True
    repeated_ms: int = 0  # depth 1: when its snapshot was last sent


@dataclass(slots=True)
class _SymbolTopics:
    book: dict[int, _BookTopic]
    seq_seen: int  # the market's last update id the topics have accounted for (gap detection)
    steps: int = 0
    last_trade_price: int = 0
    tick_direction: str = "ZeroPlusTick"
    kline_sent: dict[str, tuple[int, int]] = field(default_factory=dict)  # interval -> (bucket, ts_ms)
    u_at_ts: dict[int, int] = field(default_factory=dict)  # recording: step ts -> orderbook.50 u
    day_cache: tuple[int, tuple[int, int, int, int, int, float]] | None = None


def _changes(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    """The levels a delta sends to take a client from ``old`` to ``new``: changed or new sizes, and 0 for
    levels no longer in ``new``."""
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out.extend((p, 0) for p in old if p not in new)
    return out


class Bybit(Dialect):
    name = "bybit"
    markets = ("spot", "linear")
    #: the book never comes from REST (websocket snapshots), so neither a stale snapshot nor a refused REST call
    #: reaches a book client after it loaded markets
    unsupported_faults = ("stale", "rest429", "rest5xx")

    def __init__(self, app: MarketApp, hub: Hub) -> None:
        super().__init__(app, hub)
        self._topics: dict[str, _SymbolTopics] = {
            st.inst.symbol: _SymbolTopics({d: _BookTopic(d) for d in DEPTHS}, st.last_update_id)
            for st in app.source.states
        }
        for st in app.source.states:  # the topics start from the book the market starts with
            t = self._topics[st.inst.symbol]
            bids, asks = st.top(max(DEPTHS))
            for view in t.book.values():
                view.bids, view.asks = dict(bids[: view.depth]), dict(asks[: view.depth])
                view.seq, view.dirty = st.last_update_id, False

    # ---- naming and client configuration ------------------------------------------------------------------
    @staticmethod
    def wire(inst: Instrument) -> str:
        return inst.wire  # BTCUSDT for spot and for the linear perpetual alike

    @classmethod
    def ccxt_urls(cls, base: str) -> dict[str, Any]:
        wsb = base.replace("http://", "ws://", 1)
        public = {m: f"{wsb}/v5/public/{m}" for m in ("spot", "linear", "inverse", "option")}
        # private URLs point here too (nothing is served there), so no client configured by this ever
        # reaches the real venue
        private = {"spot": {"unified": f"{wsb}/v5/private", "nonUnified": f"{wsb}/spot/private/v3"},
                   "contract": f"{wsb}/v5/private", "usdc": f"{wsb}/trade/option/usdc/private/v1",
                   "trade": f"{wsb}/v5/trade"}
        return {"api": {"spot": base, "futures": base, "v2": base, "public": base, "private": base,
                        "ws": {"public": public, "private": private}}}

    @classmethod
    def ccxt_options(cls, market: str) -> dict[str, Any]:
        # ccxt's fetchMarkets asks for spot, linear, inverse and option by default; fetchCurrencies needs no
        # request without API keys (it returns {} then)
        if market == "spot":
            return {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"}
        return {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap", "defaultSubType": "linear"}

    @classmethod
    def endpoints(cls, base: str) -> str:
        wsb = base.replace("http://", "ws://", 1)
        return f"REST {base}/v5/market; websockets {wsb}/v5/public/spot, {wsb}/v5/public/linear"

    def routes(self) -> list[web.RouteDef]:
        rest = {
            "time": server_time, "instruments-info": instruments_info, "orderbook": orderbook, "kline": kline,
            "mark-price-kline": kline, "index-price-kline": kline, "tickers": tickers,
            "recent-trade": recent_trade, "funding/history": funding_history,
        }
        out = [web.get(f"/v5/market/{name}", h) for name, h in rest.items()]
        out += [web.get("/v5/public/spot", handle_ws), web.get("/v5/public/linear", handle_ws)]
        return out

    def middlewares(self) -> list[Middleware]:
        return [bybit_errors]

    def update_id(self, st: MarketState) -> int:
        return self._topics[st.inst.symbol].book[ID_DEPTH].u

    def book_topic(self, st: MarketState, depth: int) -> _BookTopic:
        return self._topics[st.inst.symbol].book[depth]

    def u_at(self, symbol: str, ts_ms: int) -> int | None:
        """The ``u`` of ``orderbook.50.{symbol}`` right after the step at ``ts_ms`` (message ``ts``); needs
        the server to record (``record=True``)."""
        return self._topics[symbol].u_at_ts.get(ts_ms)

    def slow_topics_pushed_last(self) -> bool:
        """Whether the last step was one on which the 200 ms topics push (every symbol steps together): a
        market frozen right after it has every topic showing the server's book (tests freeze then)."""
        return all(t.steps % 2 == 0 for t in self._topics.values())

    # ---- faults per topic ---------------------------------------------------------------------------------
    def send_diff(self, st: MarketState, topic: str, payload: str, elapsed: float) -> None:
        """``Dialect.send_diff`` with opportunities and the reorder hold per topic: a symbol has up to four
        orderbook topics, and a message held back must come after the next message of its own topic (on
        Bybit each topic numbers its messages on its own)."""
        hub, faults, market = self.hub, self.app.faults, st.inst.market
        if not faults:
            hub.publish(market, topic, payload)
            return
        key = f"{st.inst.symbol} {topic}"
        if faults.fires("malformed", key, elapsed):
            hub.publish_raw(market, topic, payload[: len(payload) // 2])
        held = self._held.pop(key, None)
        if faults.fires("drop", key, elapsed):
            pass
        elif held is None and faults.fires("reorder", key, elapsed):
            self._held[key] = (market, topic, payload)
        else:
            hub.publish(market, topic, payload)
            if faults.fires("dup", key, elapsed):
                hub.publish(market, topic, payload)
        if held is not None:
            hub.publish(*held)

    # ---- one step's messages -------------------------------------------------------------------------------
    def publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        inst = st.inst
        t = self._topics[inst.symbol]
        t.steps += 1
        if batch.diff is not None:
            d = batch.diff
            skipped = d.prev_id - t.seq_seen  # the gap fault: ids the market skipped before this diff
            t.seq_seen = d.last_id
            for view in t.book.values():
                view.dirty = True
                if skipped > 0:
                    view.u += skipped
        self._publish_books(st, t, ts_ms, elapsed)
        if batch.trades:
            self._publish_trades(st, t, batch, ts_ms)
        if batch.trades or batch.bbo_changed:
            topic = f"tickers.{inst.wire}"
            if self.hub.subscribers(inst.market, topic):
                self._publish_ticker(st, ts_ms, topic)
        if ts_ms % 1000 == 0 or batch.trades:
            self._publish_klines(st, t, ts_ms, bool(batch.trades))
        if getattr(self.app, "record", False):
            t.u_at_ts[ts_ms] = t.book[ID_DEPTH].u
            if len(t.u_at_ts) > int(getattr(self.app, "record_history", 3000)):
                del t.u_at_ts[next(iter(t.u_at_ts))]

    def _publish_books(self, st: MarketState, t: _SymbolTopics, ts_ms: int, elapsed: float) -> None:
        inst = st.inst
        slow = SLOW_DEPTHS[inst.market]
        top: tuple[list[tuple[int, int]], list[tuple[int, int]]] | None = None
        for depth, view in t.book.items():
            topic = f"orderbook.{depth}.{inst.wire}"
            if view.dirty and not (depth in slow and t.steps % 2):
                view.dirty = False
                if top is None:
                    top = st.top(max(DEPTHS))
                bids, asks = dict(top[0][:depth]), dict(top[1][:depth])
                db, da = _changes(view.bids, bids), _changes(view.asks, asks)
                if db or da:
                    view.u += 1
                    view.seq, view.ts_ms, view.bids, view.asks = st.last_update_id, ts_ms, bids, asks
                    if self.hub.subscribers(inst.market, topic):
                        if depth == 1:  # Bybit's level-1 topic sends snapshots only
                            view.repeated_ms = ts_ms
                            payload = self._book_message(inst, view, "snapshot", ts_ms)
                        else:
                            db.sort(reverse=True)
                            da.sort()
                            payload = self._book_message(inst, view, "delta", ts_ms, db, da)
                        self.send_diff(st, topic, payload, elapsed)
                    continue
            if depth == 1 and ts_ms - max(view.ts_ms, view.repeated_ms) >= LEVEL1_REPEAT_MS and (
                    self.hub.subscribers(inst.market, topic)):
                view.repeated_ms = ts_ms
                self.send_diff(st, topic, self._book_message(inst, view, "snapshot", ts_ms), elapsed)

    def _book_message(self, inst: Instrument, view: _BookTopic, kind: str, ts_ms: int,
                      bids: list[tuple[int, int]] | None = None, asks: list[tuple[int, int]] | None = None) -> str:
        """One orderbook message; a snapshot renders the topic's top N as last pushed."""
        if kind == "snapshot":
            bids = sorted(view.bids.items(), reverse=True)
            asks = sorted(view.asks.items())
        b = ",".join(f'["{price_text(inst, p)}","{qty_text(inst, q)}"]' for p, q in bids or ())
        a = ",".join(f'["{price_text(inst, p)}","{qty_text(inst, q)}"]' for p, q in asks or ())
        return (f'{{"topic":"orderbook.{view.depth}.{inst.wire}","type":"{kind}","ts":{ts_ms},'
                f'"data":{{"s":"{inst.wire}","b":[{b}],"a":[{a}],"u":{view.u},"seq":{view.seq}}},'
                f'"cts":{view.ts_ms}}}')

    def snapshot_message(self, st: MarketState, depth: int) -> str:
        """The snapshot a new subscriber of ``orderbook.{depth}`` gets: the topic's state as last pushed, with
        that push's ``u``, ``seq`` and ``ts`` (so the deltas that follow apply to it exactly)."""
        view = self._topics[st.inst.symbol].book[depth]
        return self._book_message(st.inst, view, "snapshot", view.ts_ms or st.last_ts_ms)

    def _publish_trades(self, st: MarketState, t: _SymbolTopics, batch: Batch, ts_ms: int) -> None:
        inst = st.inst
        linear = inst.market == "linear"
        rows = []
        for tr in batch.trades:
            # Bybit's tick direction: against the previous trade's price, "Zero*" when it is unchanged
            if t.last_trade_price:
                if tr.price_units > t.last_trade_price:
                    t.tick_direction = "PlusTick"
                elif tr.price_units < t.last_trade_price:
                    t.tick_direction = "MinusTick"
                elif not t.tick_direction.startswith("Zero"):
                    t.tick_direction = "Zero" + t.tick_direction
            t.last_trade_price = tr.price_units
            rows.append((tr, t.tick_direction))
        topic = f"publicTrade.{inst.wire}"
        if not self.hub.subscribers(inst.market, topic):
            return
        items = []
        for tr, direction in rows:
            side = "Sell" if tr.buyer_is_maker else "Buy"
            tid = linear_trade_id(inst, tr.trade_id) if linear else str(tr.trade_id)
            tail = f',"L":"{direction}"' if linear else ""
            items.append(f'{{"T":{tr.ts_ms},"s":"{inst.wire}","S":"{side}","v":"{qty_text(inst, tr.qty_units)}",'
                         f'"p":"{price_text(inst, tr.price_units)}"{tail},"i":"{tid}","BT":false,"RPI":false,'
                         f'"seq":{st.last_update_id}}}')
        self.hub.publish(inst.market, topic,
                         f'{{"topic":"{topic}","type":"snapshot","ts":{ts_ms},"data":[{",".join(items)}]}}')

    # ---- tickers ------------------------------------------------------------------------------------------
    def day_stats(self, st: MarketState, now_ms: int) -> tuple[int, int, int, int, int, float]:
        """(open, high, low, last price units, volume qty units, turnover) over the last 24 h of candles;
        the closed minutes are summed once a minute."""
        c = st.candles
        c.ensure_until(now_ms)
        if c.first is None or c.last is None:
            p = st.last_price()
            return p, p, p, p, 0, 0.0
        t = self._topics[st.inst.symbol]
        cur = c.last
        first = max(c.first, cur - 1439)
        if t.day_cache is None or t.day_cache[0] != cur:
            o = h = lo = 0
            vol, qv = 0, 0.0
            for m in range(first, cur):
                k = c.minutes.get(m)
                if k is None:
                    continue
                if not o:
                    o, h, lo = k[1], k[2], k[3]
                h, lo = max(h, k[2]), min(lo, k[3])
                vol += k[5]
                qv += k[6]
            t.day_cache = (cur, (o, h, lo, 0, vol, qv))
        o, h, lo, _, vol, qv = t.day_cache[1]
        k = c.minutes[cur]
        if not o:
            o, h, lo = k[1], k[2], k[3]
        return o, max(h, k[2]), min(lo, k[3]), k[4], vol + k[5], qv + k[6]

    def ticker_fields(self, st: MarketState, now_ms: int, for_ws: bool) -> dict[str, str]:
        """A ticker as Bybit's REST ``tickers`` (and the ``tickers`` topic) lists it."""
        i = st.inst
        o, h, lo, last, vol, qv = self.day_stats(st, now_ms)
        b = st.bbo()
        pct = f"{(last - o) / o:.4f}" if o else "0"
        row: dict[str, str] = {"symbol": i.wire}
        if i.market == "spot":
            if not for_ws:  # Bybit's spot ticker topic carries no best bid/ask
                row.update(bid1Price=price_text(i, b[0]), bid1Size=qty_text(i, b[1]), ask1Price=price_text(i, b[2]),
                           ask1Size=qty_text(i, b[3]))
            row.update(lastPrice=price_text(i, last), prevPrice24h=price_text(i, o), price24hPcnt=pct,
                       highPrice24h=price_text(i, h), lowPrice24h=price_text(i, lo), turnover24h=f"{qv:.8f}",
                       volume24h=qty_text(i, vol) if vol else "0", usdIndexPrice=price_text(i, last))
            return row
        next_funding = (now_ms // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
        one_hour_ago = st.candles.minutes.get((now_ms // MINUTE_MS) - 60)
        row.update(
            lastPrice=price_text(i, last), indexPrice=price_text(i, last), markPrice=price_text(i, last),
            prevPrice24h=price_text(i, o), price24hPcnt=pct, highPrice24h=price_text(i, h),
            lowPrice24h=price_text(i, lo),
            prevPrice1h=price_text(i, one_hour_ago[4] if one_hour_ago else o), openInterest="10000",
            openInterestValue=f"{10000 * i.price(last):.2f}", turnover24h=f"{qv:.4f}",
            volume24h=qty_text(i, vol) if vol else "0", fundingRate=FUNDING_RATE,
            nextFundingTime=str(next_funding), predictedDeliveryPrice="", basisRate="", deliveryFeeRate="",
            deliveryTime="0", ask1Size=qty_text(i, b[3]), bid1Price=price_text(i, b[0]),
            ask1Price=price_text(i, b[2]), bid1Size=qty_text(i, b[1]),
        )
        return row

    def ticker_snapshot(self, st: MarketState, now_ms: int) -> str:
        row = self.ticker_fields(st, now_ms, for_ws=True)
        return dumps({"topic": f"tickers.{st.inst.wire}", "type": "snapshot", "data": row,
                      "cs": st.last_update_id, "ts": now_ms})

    def _publish_ticker(self, st: MarketState, ts_ms: int, topic: str) -> None:
        row = self.ticker_fields(st, ts_ms, for_ws=True)
        if st.inst.market == "spot":  # Bybit's spot tickers are snapshots every time
            msg: dict[str, Any] = {"topic": topic, "ts": ts_ms, "type": "snapshot", "cs": st.last_update_id,
                                   "data": row}
        else:
            # every field that moves, changed or not: a subscriber that came in between two deltas (its
            # snapshot) then never misses a change, and ccxt merges deltas into the ticker it holds
            moving = {k: v for k, v in row.items() if k not in _STATIC_TICKER_FIELDS}
            msg = {"topic": topic, "type": "delta", "data": moving, "cs": st.last_update_id, "ts": ts_ms}
        self.hub.publish(st.inst.market, topic, dumps(msg))

    # ---- klines -------------------------------------------------------------------------------------------
    def _publish_klines(self, st: MarketState, t: _SymbolTopics, ts_ms: int, traded: bool) -> None:
        inst = st.inst
        for interval, minutes in _KLINE_MINUTES.items():
            topic = f"kline.{interval}.{inst.wire}"
            if not self.hub.subscribers(inst.market, topic):
                continue
            st.candles.ensure_until(ts_ms)
            bucket = (ts_ms // MINUTE_MS) // minutes
            last = t.kline_sent.get(interval)
            if last is not None and last[0] != bucket:
                closed = st.candles.candle(minutes, last[0])
                if closed is not None:
                    self.hub.publish(inst.market, topic, self._kline_message(inst, interval, closed, ts_ms, True))
            if last is None or last[0] != bucket or traded or ts_ms - last[1] >= 1000:
                cur = st.candles.candle(minutes, bucket)
                if cur is not None:
                    self.hub.publish(inst.market, topic, self._kline_message(inst, interval, cur, ts_ms, False))
                t.kline_sent[interval] = (bucket, ts_ms)

    def _kline_message(self, inst: Instrument, interval: str, c: Candle, ts_ms: int, confirm: bool) -> str:
        self.app.log.kline_messages += 1
        start = c[0]
        row = {"start": start, "end": start + _KLINE_MINUTES[interval] * MINUTE_MS - 1, "interval": interval,
               "open": price_text(inst, c[1]), "close": price_text(inst, c[4]), "high": price_text(inst, c[2]),
               "low": price_text(inst, c[3]), "volume": qty_text(inst, c[5]) if c[5] else "0",
               "turnover": f"{c[6]:.8f}", "confirm": confirm, "timestamp": ts_ms}
        return dumps({"topic": f"kline.{interval}.{inst.wire}", "data": [row], "ts": ts_ms, "type": "snapshot"})

    # ---- the websocket protocol ---------------------------------------------------------------------------
    def on_text(self, conn: Connection, text: str) -> None:
        """Answer one text frame: a subscription, an unsubscription or a ping; never costs the connection."""
        cid = conn.data["conn_id"]
        try:
            req = json.loads(text)
            op = req.get("op")
            args = req.get("args")
            rid = req.get("req_id")
        except (ValueError, AttributeError):
            conn.push(dumps({"success": False, "ret_msg": "error:invalid request, not json", "conn_id": cid,
                             "op": ""}))
            return
        ack: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": cid}
        if rid is not None:
            ack["req_id"] = rid
        if op == "ping":
            if not self.app.noping_active(conn.opened):
                conn.push(dumps({**ack, "ret_msg": "pong", "op": "ping"}))
            return
        if op not in ("subscribe", "unsubscribe"):
            conn.push(dumps({"success": False, "ret_msg": "error:invalid op", "conn_id": cid,
                             "request": {"op": op, "args": args}}))
            return
        ack["op"] = op
        topics = args if isinstance(args, list) else []
        problem = None
        if not topics or not all(isinstance(a, str) for a in topics):
            problem = "error:args must be a list of topics"
        elif conn.market == "spot" and len(topics) > SPOT_MAX_ARGS:
            problem = f"args size >{SPOT_MAX_ARGS}"
        else:
            for topic in topics:
                problem = self._topic_problem(conn, topic, subscribe=op == "subscribe")
                if problem:
                    break
        if problem:
            conn.push(dumps({**ack, "success": False, "ret_msg": problem}))
            return
        if op == "unsubscribe":
            for topic in topics:
                self.hub.remove(conn, topic)
            conn.push(dumps(ack))
            return
        for topic in topics:
            self.hub.add(conn, topic)
        conn.push(dumps({**ack, "ret_msg": "subscribe"}))
        for topic in topics:  # Bybit sends the book and ticker snapshots right after the ack
            kind, _, rest = topic.partition(".")
            if kind == "orderbook":
                depth, _, wire = rest.partition(".")
                st = self.app.state_by_wire(conn.market, wire)
                if st is not None:
                    conn.push(self.snapshot_message(st, int(depth)))
            elif kind == "tickers":
                st = self.app.state_by_wire(conn.market, rest)
                if st is not None:
                    conn.push(self.ticker_snapshot(st, self.app.now_ms()))

    def _topic_problem(self, conn: Connection, topic: str, subscribe: bool) -> str | None:
        """Bybit's refusal of ``topic`` on ``conn``, or None when it is served."""
        parts = topic.split(".")
        kind, wire = parts[0], parts[-1]
        ok_shape = (kind == "orderbook" and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) in DEPTHS) or (
            kind in ("publicTrade", "tickers") and len(parts) == 2) or (
            kind == "kline" and len(parts) == 3 and parts[1] in _KLINE_MINUTES)
        if not ok_shape:
            return f"error:handler not found,topic:{topic}"
        if self.app.state_by_wire(conn.market, wire) is None:
            return f"Invalid symbol :[{topic}]"
        if subscribe and topic in conn.subs:
            return f"error:already subscribed,topic:{topic}"
        if not subscribe and topic not in conn.subs:
            return f"error:not subscribed,topic:{topic}"
        return None


# ---- REST -----------------------------------------------------------------------------------------------------
def _envelope(app: MarketApp, result: object) -> web.Response:
    return web.Response(text=dumps({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                                    "time": app.now_ms()}), content_type="application/json")


def _error(app: MarketApp, code: int, msg: str, status: int = 200, headers: dict[str, str] | None = None
           ) -> web.Response:
    return web.Response(text=dumps({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                                    "time": app.now_ms()}), status=status, content_type="application/json",
                        headers=headers)


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BybitError(10001, f"params error: {name} invalid") from None


def _category(request: web.Request, default: str | None = None) -> str:
    category = request.query.get("category") or default
    if category not in ("spot", "linear", "inverse", "option"):
        raise BybitError(10001, "Illegal category")
    return category


def _state(request: web.Request, category: str) -> MarketState:
    wire = request.query.get("symbol")
    if not wire:
        raise BybitError(10001, "params error: symbol is required")
    st = request.app[APP_KEY].state_by_wire(category, wire.upper()) if category in ("spot", "linear") else None
    if st is None:
        raise BybitError(10001, "Not supported symbols")
    return st


def _dialect(request: web.Request) -> Bybit:
    d = request.app[DIALECT_KEY]
    assert isinstance(d, Bybit)
    return d


async def server_time(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    now_us = app.now_us()
    return _envelope(app, {"timeSecond": str(now_us // 1_000_000), "timeNano": str(now_us * 1000)})


def _spot_instrument(i: Instrument) -> dict[str, Any]:
    return {
        "symbol": i.wire, "baseCoin": i.base, "quoteCoin": i.quote, "innovation": "0", "status": "Trading",
        "marginTrading": "utaOnly", "stTag": "0",
        "lotSizeFilter": {"basePrecision": i.step, "quotePrecision": "0.00000001", "minOrderQty": i.step,
                          "maxOrderQty": "9000", "minOrderAmt": i.min_notional, "maxOrderAmt": "2000000"},
        "priceFilter": {"tickSize": i.tick},
        "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.05"},
    }


def _linear_instrument(i: Instrument) -> dict[str, Any]:
    return {
        "symbol": i.wire, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": i.base,
        "quoteCoin": i.quote, "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
        "priceScale": str(_decimals(i.tick)),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": i.tick, "maxPrice": price_text(i, i.tick_units * 10**8), "tickSize": i.tick},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": i.step, "qtyStep": i.step,
                          "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000",
                          "minNotionalValue": i.min_notional},
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": i.quote, "copyTrading": "both",
        "upperFundingRate": "0.005", "lowerFundingRate": "-0.005", "isPreListing": False, "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"}, "displayName": "",
    }


async def instruments_info(request: web.Request) -> web.Response:
    """Spot in one page (Bybit ignores limit and cursor there); linear ``limit`` (default 500, max 1000) per
    page, ``cursor`` = the opaque ``nextPageCursor`` of the page before, ``""`` after the last one."""
    app = request.app[APP_KEY]
    category = _category(request)
    states = app.states_of(category) if category in ("spot", "linear") else []
    status = request.query.get("status")
    if status and status != "Trading":
        states = []
    symbol, base = request.query.get("symbol"), request.query.get("baseCoin")
    states = [s for s in states if (not symbol or s.inst.wire == symbol.upper()) and (
        not base or s.inst.base == base.upper())]
    if category == "spot":
        return _envelope(app, {"category": "spot", "list": [_spot_instrument(s.inst) for s in states]})
    limit = max(1, min(_int(request, "limit", 500) or 500, 1000))
    cursor = request.query.get("cursor") or ""
    start = 0
    if cursor:
        try:
            start = int(cursor.removeprefix("page%3D").removeprefix("page="))
        except ValueError:
            raise BybitError(10001, "params error: cursor invalid") from None
    page = states[start: start + limit]
    nxt = f"page%3D{start + limit}" if start + limit < len(states) else ""
    return _envelope(app, {"category": category, "list": [_linear_instrument(s.inst) for s in page],
                           "nextPageCursor": nxt})


async def orderbook(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    category = _category(request)
    st = _state(request, category)
    max_limit, default = REST_BOOK_LIMITS[category]
    limit = max(1, min(_int(request, "limit", default) or default, max_limit))
    _, bids, asks = app.depth_snapshot(st, limit)
    i = st.inst
    u = _dialect(request).book_topic(st, REST_BOOK_ID_DEPTH[category]).u
    return _envelope(app, {
        "s": i.wire, "b": [[price_text(i, p), qty_text(i, q)] for p, q in bids],
        "a": [[price_text(i, p), qty_text(i, q)] for p, q in asks], "ts": app.now_ms(), "u": u,
        "seq": st.last_update_id, "cts": st.last_ts_ms,
    })


async def kline(request: web.Request) -> web.Response:
    """Candles newest first: from ``start`` forward (at most ``limit``), else the last ``limit`` up to ``end``
    (or now); the open candle included."""
    app = request.app[APP_KEY]
    category = _category(request, "linear")
    st = _state(request, category)
    interval = request.query.get("interval", "")
    name = KLINE_INTERVALS.get(interval)
    if name is None:
        raise BybitError(10001, "Invalid period!" if interval else "params error: interval is required")
    limit = max(1, min(_int(request, "limit", 200) or 200, 1000))
    st.candles.ensure_until(app.now_ms())
    try:
        rows = st.candles.klines(name, _int(request, "start"), _int(request, "end"), limit)
    except HeliosError:
        raise BybitError(10001, "Invalid period!") from None
    i = st.inst
    out = [[str(c[0]), price_text(i, c[1]), price_text(i, c[2]), price_text(i, c[3]), price_text(i, c[4]),
            qty_text(i, c[5]) if c[5] else "0", f"{c[6]:.8f}"] for c in reversed(rows)]
    return _envelope(app, {"category": category, "symbol": i.wire, "list": out})


async def tickers(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    category = _category(request)
    if request.query.get("symbol"):
        states = [_state(request, category)]
    else:
        states = app.states_of(category) if category in ("spot", "linear") else []
    now = app.now_ms()
    d = _dialect(request)
    return _envelope(app, {"category": category, "list": [d.ticker_fields(s, now, for_ws=False) for s in states]})


async def recent_trade(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    category = _category(request)
    st = _state(request, category)
    cap, default = (60, 60) if category == "spot" else (1000, 500)
    limit = max(1, min(_int(request, "limit", default) or default, cap))
    i = st.inst
    out = []
    for t in reversed(list(st.trades)[-limit:]):
        tid = str(t.trade_id) if category == "spot" else linear_trade_id(i, t.trade_id)
        out.append({"execId": tid, "symbol": i.wire, "price": price_text(i, t.price_units),
                    "size": qty_text(i, t.qty_units), "side": "Sell" if t.buyer_is_maker else "Buy",
                    "time": str(t.ts_ms), "isBlockTrade": False, "isRPITrade": False})
    return _envelope(app, {"category": category, "list": out})


async def funding_history(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    category = _category(request)
    if category != "linear":
        raise BybitError(10001, "Illegal category")
    st = _state(request, category)
    limit = max(1, min(_int(request, "limit", 200) or 200, 200))
    end = _int(request, "endTime") or app.now_ms()
    start = _int(request, "startTime")
    last = end // FUNDING_PERIOD_MS
    first = -(-start // FUNDING_PERIOD_MS) if start is not None else last - limit + 1
    rows = [{"symbol": st.inst.wire, "fundingRate": FUNDING_RATE, "fundingRateTimestamp": str(k * FUNDING_PERIOD_MS)}
            for k in range(last, first - 1, -1)][:limit]
    return _envelope(app, {"category": category, "list": rows})


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """``/v5/public/spot`` or ``/v5/public/linear``: a websocket when asked to upgrade, else Bybit's 404."""
    if not is_upgrade(request):
        raise web.HTTPNotFound()
    market = "spot" if request.path.endswith("/spot") else "linear"
    dialect = _dialect(request)

    def conn_for(ws: web.WebSocketResponse) -> Connection:
        conn = Connection(ws, market)
        conn.data["conn_id"] = str(uuid.uuid4())
        return conn

    return await serve(request, conn_for, dialect.on_text)


_GATEWAY_503 = ("<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
                "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n")


@web.middleware
async def bybit_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bybit's error envelope, a 404 naming the unknown path, and the REST faults (429 with retCode 10006, a
    503 gateway page)."""
    app = request.app[APP_KEY]
    if not is_upgrade(request):
        fault = request.app[DIALECT_KEY].rest_fault(request)
        if fault == "rest429":
            reset = app.now_ms() + 1000
            return _error(app, 10006, "Too many visits!", status=429, headers={
                "X-Bapi-Limit": "600", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset),
                "Retry-After": "1"})
        if fault == "rest5xx":
            return web.Response(text=_GATEWAY_503, status=503, content_type="text/html")
    try:
        return await handler(request)
    except BybitError as exc:
        return _error(app, exc.code, exc.msg, status=exc.status)
    except web.HTTPNotFound:
        return _error(app, 10404, f"no such endpoint on the local Bybit exchange: {request.path}", status=404)


DIALECT = Bybit
