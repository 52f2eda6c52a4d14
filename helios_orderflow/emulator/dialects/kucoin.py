"""KuCoin spot (the classic, non-UTA API) on the local exchange: the public REST market data ccxt's ``kucoin``
client and Freqtrade read, ``bullet-public`` and the websocket push protocol, in KuCoin's JSON shapes.

REST (every answer in KuCoin's envelope ``{"code": "200000", "data": ...}``):

- ``GET /api/v1/timestamp``, ``/api/v1/status``;
- ``GET /api/v2/symbols`` (and ``/api/v1/symbols``): ``baseIncrement`` (the lot step), ``priceIncrement``
  (the tick), ``baseMinSize``, ``quoteMinSize`` (the min notional), ``enableTrading``, ...;
- ``GET /api/v3/currencies`` (and ``/api/v3/currencies/{currency}``), public, one chain per currency;
- ``GET /api/v1/market/allTickers`` (with the fee rates ccxt's ``fetch_markets`` reads), ``/market/stats``,
  ``/market/orderbook/level1``;
- ``GET /api/v1/market/orderbook/level2_20`` and ``level2_100``: the public partial books ccxt starts its
  book from (``sequence`` is the book's update id); ``GET /api/v3/market/orderbook/level2``: the full book,
  which on KuCoin needs an API key: served only to a request carrying ``KC-API-KEY`` (any key; signatures
  are not checked). ccxt asks for it only when it holds credentials and ``watch_order_book`` has no limit;
- ``GET /api/v1/market/histories`` (the last 100 trades: ``sequence``, no trade id, as KuCoin),
  ``/api/v1/market/candles`` (``type`` 1min..1day, ``startAt``/``endAt`` in seconds, newest first, at most
  1500, rows ``[start_s, open, close, high, low, volume, turnover]``);
- ``POST /api/v1/bullet-public``: a token and one instance server whose ``endpoint`` is this server's
  ``/endpoint`` (built from the request's ``Host``), ``pingInterval`` = the server's ping interval, at most
  KuCoin's 18 000 ms (ccxt pings at exactly that interval whatever its ``keepAlive`` says).

Errors: ``{"code": "400100", "msg": ...}`` (HTTP 400) for bad parameters and unknown symbols, ``404000`` for an
unknown path, ``400001`` (HTTP 401) for the full book without a key. The REST faults: ``rest429`` = HTTP 429
``{"code": "429000"}`` (ccxt: ``RateLimitExceeded``), ``rest5xx`` = HTTP 500 ``{"code": "500000", "msg":
"Internal Server Error"}`` (ccxt: ``ExchangeNotAvailable``); both can hit ``bullet-public`` and the snapshot.

Websocket (``/endpoint?token=...&connectId=...``; a token this server did not issue gets ``{"type": "error",
"data": "token is expired"}``, which makes ccxt negotiate a new one): ``{"id": connectId, "type": "welcome"}``
on open; ``subscribe``/``unsubscribe`` with a comma-separated topic, acked ``{"id", "type": "ack"}`` when
``response`` is true, an unknown topic or symbol answered ``{"type": "error", "code": 404}``; text
``ping`` -> ``pong``. Topics:

- ``/market/level2:{symbols}``: ``trade.l2update`` with ``sequenceStart``/``sequenceEnd`` and per change
  ``[price, size, sequence]``;
- ``/spotMarket/level2Depth5`` and ``level2Depth50``: the top 5/50 on every change (subject ``level2``);
- ``/market/match:{symbols}``: ``trade.l3match``, one per trade: ``tradeId`` = ``sequence`` = the market's
  trade id as a numeric string (KuCoin's current ids are such strings, increasing per symbol; the 2021
  captures' 24-hex ids are gone), ``side`` the taker's, ``time`` in ns;
- ``/spotMarket/level1:{symbols}``: best bid/ask on every change (ccxt's ``watch_bids_asks``);
- ``/market/ticker:{symbols}`` (or ``all``): ``trade.ticker`` on a BBO change or trade;
  ``/market/snapshot:{symbol}``: ``trade.snapshot`` every 2 s (ccxt's default ``watch_ticker``);
- ``/market/candles:{symbol}_{type}``: ``trade.candles.update`` on trades and once a second.

Sequence semantics: KuCoin numbers every change of a symbol's book; the market's one id per level change is
that sequence (``update_id`` is ``last_update_id``). A message covers ``sequenceStart = Diff.first_id`` to
``sequenceEnd = Diff.last_id`` and lists every sequence in it once: the changes the step's diff holds take
the last sequences (bids, then asks), and the sequences of changes a later change of the same level
overwrote within the 100 ms step come first as KuCoin's own ``["0", "0", seq]`` entries (a consumed
sequence without a level change, which ccxt skips). A snapshot's ``sequence`` is always a message's
``sequenceEnd``, so ccxt's join (``get_cache_index``: the first cached message with ``sequenceStart - 1 <=
sequence < sequenceEnd``) never splits one.

How ccxt 4.5.90 (``pro/kucoin.py``) keeps the book, and so how each fault shows: it caches the first
``/market/level2`` messages, fetches a REST snapshot (``level2_100`` without credentials, whatever the limit
is), applies the cached messages from the one that follows the snapshot and then applies every message whose
``sequenceEnd`` is above the book's nonce, keeping each change's sequence as a third element of a level it
inserts (``[price, size, seq]``). Its book therefore equals the server's only within the price range of the
last snapshot (a level deeper than its 100th that no message touched since is missing), the venue's own limit
for a keyless client. It never checks that ``sequenceStart`` follows the nonce:

- ``drop``, ``reorder``, ``gap``: the next message's ``sequenceStart`` is above the nonce + 1. ccxt applies
  it anyway (a reordered message arrives with ``sequenceEnd`` <= nonce and is skipped): the book silently
  loses those changes. Only a client checking the chain sees it (Helios must: ccxt does not);
- ``dup``: the second copy has ``sequenceEnd`` <= nonce: ccxt discards it, as KuCoin's own rule says (a
  message not above the local sequence is discarded), so a repeat needs no resync;
- ``stale``: the snapshot's ``sequence`` is below the first cached ``sequenceStart - 1``: ccxt fetches again,
  and after 3 stale answers rejects the watch (``nonce is behind the cache``) and closes the connection
  (``Client.close``, which *cancels* every other watcher pending on it: the other pairs, trades, quotes);
- ``crossed``: a real bid above the best ask for 1 s, in the stream and in snapshots alike;
- ``malformed``: a truncated ``trade.l2update`` frame (ccxt's frame handler raises on it);
- ``disconnect``: the server closes every socket; ``noping``: text pings go unanswered (and no websocket
  pings), so ccxt times the connection out after two ``pingInterval``s;
- ``rest429``/``rest5xx``: on the snapshot and ``bullet-public`` (the client's path), as above. ccxt asks
  ``bullet-public`` once and dials every reconnect with that token (it asks again only after ``token is
  expired``), so once a client is synced the faults reach only the snapshot of a resync. ccxt tries the
  snapshot 3 times at once (``fetch_rest_order_book_safe``, no wait after a 429): every other request refused
  never reaches the caller; every request refused fails the sync (``RateLimitExceeded``/
  ``ExchangeNotAvailable``) and closes the connection as ``stale`` does. A refused ``bullet-public`` rejects
  the watch call, and the next call asks again.

Not served: UTA (``/api/ua``) endpoints and the UTA websocket, private REST and websocket channels, futures
(``api-futures``), ``1week``/``1month`` candles, KuCoin's 100-topics-per-connection and rate limits, and
the real venue's ``pingTimeout`` disconnect of a client that stops pinging.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from typing import TYPE_CHECKING, Any

from aiohttp import web

from helios_orderflow.emulator.app import APP_KEY, MarketApp, dumps
from helios_orderflow.emulator.dialects.base import DIALECT_KEY, Dialect, Middleware
from helios_orderflow.emulator.hub import HUB_KEY, Connection, Hub, is_upgrade, serve
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import INTERVALS, MINUTE_MS
from helios_orderflow.emulator.market import Batch, Diff, MarketState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

OK = "200000"
#: KuCoin's own ``pingInterval`` (ms) in ``bullet-public``; a server with a shorter ping interval says that
PING_INTERVAL_MS = 18_000
PING_TIMEOUT_MS = 10_000
WS_PATH = "/endpoint"
#: KuCoin's candle ``type`` names for the intervals the local exchange keeps
KLINE_TYPES: dict[str, str] = {
    "1m": "1min", "3m": "3min", "5m": "5min", "15m": "15min", "30m": "30min", "1h": "1hour", "2h": "2hour",
    "4h": "4hour", "6h": "6hour", "8h": "8hour", "12h": "12hour", "1d": "1day",
}
_TYPE_MINUTES = {t: INTERVALS[i] for i, t in KLINE_TYPES.items()}
CANDLES_MAX = 1500
HISTORIES = 100
FEE_RATE = "0.001"
_DEPTH_TOPICS = {"/spotMarket/level2Depth5": 5, "/spotMarket/level2Depth50": 50}
_TOPICS = ("/market/level2", "/market/match", "/market/ticker", "/market/snapshot", "/spotMarket/level1",
           "/market/candles", *_DEPTH_TOPICS)


def _trim(text: str) -> str:
    """KuCoin's number strings carry no trailing zeros (``"242.649"``, ``"150"``); the float is the same."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _signed(fmt: Any, units: int) -> str:
    return _trim(fmt(units)) if units >= 0 else "-" + _trim(fmt(-units))


def _order_id(kind: str, symbol: str, n: int) -> str:
    """A 24-hex id shaped like KuCoin's order ids, the same for the same order."""
    return f"{zlib.crc32(f'{kind}:{symbol}'.encode()):08x}{n:016x}"


class KucoinError(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


def _ok(data: object) -> web.Response:
    return _json({"code": OK, "data": data})


class Kucoin(Dialect):
    name = "kucoin"
    markets = ("spot",)

    def __init__(self, app: MarketApp, hub: Hub) -> None:
        super().__init__(app, hub)
        self.tokens: set[str] = set()  # issued by bullet-public; valid for the server's life (KuCoin: 24 h)
        self._candle_sent: dict[tuple[str, str], tuple[int, int]] = {}  # (symbol, type) -> (bucket, ts_ms)

    # ---- naming and client configuration --------------------------------------------------------------
    @staticmethod
    def wire(inst: Instrument) -> str:
        return f"{inst.base}-{inst.quote}"

    @classmethod
    def ccxt_urls(cls, base: str) -> dict[str, Any]:
        # ccxt's kucoin signs paths under bare hosts (``https://api.kucoin.com`` + ``/api/v2/symbols``); the
        # classic websocket URL comes from bullet-public, the ``ws`` entries are only for the UTA API.
        wsb = base.replace("http://", "ws://", 1) + WS_PATH
        hosts = ("public", "private", "futuresPrivate", "futuresPublic", "broker", "earn", "uta", "utaV2",
                 "utaPrivate")
        api: dict[str, Any] = dict.fromkeys(hosts, base)
        api["webExchange"] = f"{base}/_api"
        api["ws"] = {"spot": wsb, "futures": wsb, "private": wsb}
        return {"api": api}

    @classmethod
    def ccxt_options(cls, market: str) -> dict[str, Any]:
        return {"fetchMarkets": {"types": ["spot"]}}

    @classmethod
    def endpoints(cls, base: str) -> str:
        wsb = base.replace("http://", "ws://", 1)
        return f"REST {base}/api/v1, /api/v2, /api/v3; websocket {wsb}{WS_PATH} (via POST /api/v1/bullet-public)"

    def routes(self) -> list[web.RouteDef]:
        return [*_rest_routes(), web.post("/api/v1/bullet-public", bullet_public), web.get(WS_PATH, handle_ws)]

    def middlewares(self) -> list[Middleware]:
        return [kucoin_errors]

    def ping_interval_ms(self) -> int:
        return min(PING_INTERVAL_MS, max(100, int(self.app.ping_interval_s * 1000)))

    # ---- one step's messages ------------------------------------------------------------------------
    def _l2update(self, inst: Instrument, d: Diff, ts_ms: int) -> str:
        fp, fq = inst.format_price, inst.format_qty
        real = len(d.bids) + len(d.asks)
        seq = d.first_id
        fillers = []
        for _ in range(d.last_id - d.first_id + 1 - real):
            fillers.append(f'["0","0","{seq}"]')
            seq += 1
        bids = []
        for p, q in d.bids:
            bids.append(f'["{_trim(fp(p))}","{_trim(fq(q))}","{seq}"]')
            seq += 1
        asks = fillers
        for p, q in d.asks:
            asks.append(f'["{_trim(fp(p))}","{_trim(fq(q))}","{seq}"]')
            seq += 1
        wire = self.wire(inst)
        return (f'{{"topic":"/market/level2:{wire}","type":"message","subject":"trade.l2update","data":'
                f'{{"changes":{{"asks":[{",".join(asks)}],"bids":[{",".join(bids)}]}},"sequenceEnd":{d.last_id},'
                f'"sequenceStart":{d.first_id},"symbol":"{wire}","time":{ts_ms}}}}}')

    def publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        inst, hub = st.inst, self.hub
        market, wire = inst.market, self.wire(inst)
        fp, fq = inst.format_price, inst.format_qty
        if batch.diff is not None:
            self.send_diff(st, f"/market/level2:{wire}", self._l2update(inst, batch.diff, ts_ms), elapsed)
            for channel, depth in _DEPTH_TOPICS.items():
                topic = f"{channel}:{wire}"
                if hub.subscribers(market, topic):
                    bids, asks = st.top(depth)
                    b = ",".join(f'["{_trim(fp(p))}","{_trim(fq(q))}"]' for p, q in bids)
                    a = ",".join(f'["{_trim(fp(p))}","{_trim(fq(q))}"]' for p, q in asks)
                    hub.publish(market, topic, f'{{"topic":"{topic}","type":"message","subject":"level2",'
                                               f'"data":{{"asks":[{a}],"bids":[{b}],"timestamp":{ts_ms}}}}}')
        if batch.trades:
            topic = f"/market/match:{wire}"
            if hub.subscribers(market, topic):
                for t in batch.trades:
                    side = "sell" if t.buyer_is_maker else "buy"
                    hub.publish(market, topic, (
                        f'{{"topic":"{topic}","type":"message","subject":"trade.l3match","data":{{'
                        f'"makerOrderId":"{_order_id("maker", inst.symbol, t.trade_id)}",'
                        f'"price":"{_trim(fp(t.price_units))}","sequence":"{t.trade_id}","side":"{side}",'
                        f'"size":"{_trim(fq(t.qty_units))}","symbol":"{wire}",'
                        f'"takerOrderId":"{_order_id("taker", inst.symbol, t.agg_id)}",'
                        f'"time":"{t.ts_ms * 1_000_000}","tradeId":"{t.trade_id}","type":"match"}}}}'))
        if batch.bbo_changed:
            topic = f"/spotMarket/level1:{wire}"
            if hub.subscribers(market, topic):
                bbo = st.bbo()
                hub.publish(market, topic, (
                    f'{{"topic":"{topic}","type":"message","subject":"level1","data":{{'
                    f'"asks":["{_trim(fp(bbo[2]))}","{_trim(fq(bbo[3]))}"],'
                    f'"bids":["{_trim(fp(bbo[0]))}","{_trim(fq(bbo[1]))}"],"timestamp":{ts_ms}}}}}'))
        if batch.bbo_changed or batch.trades:
            self._publish_ticker(st, ts_ms)
        if ts_ms % 2000 == 0:
            topic = f"/market/snapshot:{wire}"
            if hub.subscribers(market, topic):
                data = {"sequence": str(st.last_update_id), "data": _snapshot(self.app, st, ts_ms)}
                hub.publish(market, topic, dumps({"topic": topic, "type": "message", "subject": "trade.snapshot",
                                                  "data": data}))
        if ts_ms % 1000 == 0 or batch.trades:
            self._publish_candles(st, ts_ms, bool(batch.trades))

    def _publish_ticker(self, st: MarketState, ts_ms: int) -> None:
        inst, hub = st.inst, self.hub
        wire = self.wire(inst)
        topic, everything = f"/market/ticker:{wire}", "/market/ticker:all"
        one, every = hub.subscribers(inst.market, topic), hub.subscribers(inst.market, everything)
        if not one and not every:
            return
        fp, fq = inst.format_price, inst.format_qty
        b = st.bbo()
        last = st.trades[-1] if st.trades else None
        data = (f'{{"bestAsk":"{_trim(fp(b[2]))}","bestAskSize":"{_trim(fq(b[3]))}","bestBid":"{_trim(fp(b[0]))}",'
                f'"bestBidSize":"{_trim(fq(b[1]))}","price":"{_trim(fp(st.last_price()))}",'
                f'"sequence":"{st.last_update_id}","size":"{_trim(fq(last.qty_units if last else 0))}",'
                f'"time":{ts_ms}}}')
        if one:
            hub.publish(inst.market, topic,
                        f'{{"topic":"{topic}","type":"message","subject":"trade.ticker","data":{data}}}')
        if every:  # KuCoin names the symbol in the subject of the all-symbols ticker
            hub.publish(inst.market, everything,
                        f'{{"topic":"{everything}","type":"message","subject":"{wire}","data":{data}}}')

    def _publish_candles(self, st: MarketState, ts_ms: int, traded: bool) -> None:
        inst = st.inst
        wire = self.wire(inst)
        for ktype, minutes in _TYPE_MINUTES.items():
            topic = f"/market/candles:{wire}_{ktype}"
            if not self.hub.subscribers(inst.market, topic):
                continue
            st.candles.ensure_until(ts_ms)
            bucket = (ts_ms // MINUTE_MS) // minutes
            key = (inst.symbol, ktype)
            last = self._candle_sent.get(key)
            if last is None or last[0] != bucket or traded or ts_ms - last[1] >= 1000:
                c = st.candles.candle(minutes, bucket)
                if c is not None:
                    self.app.log.kline_messages += 1
                    self.hub.publish(inst.market, topic, dumps({
                        "topic": topic, "type": "message", "subject": "trade.candles.update",
                        "data": {"symbol": wire, "candles": _candle_row(inst, c), "time": ts_ms * 1_000_000}}))
                self._candle_sent[key] = (bucket, ts_ms)


DIALECT = Kucoin


def _dialect(request: web.Request) -> Kucoin:
    d = request.app[DIALECT_KEY]
    assert isinstance(d, Kucoin)
    return d


# ---- REST ----------------------------------------------------------------------------------------------
def _state(request: web.Request) -> MarketState:
    wire = request.query.get("symbol")
    if not wire:
        raise KucoinError(400, "400100", "symbol must not be blank")
    st = request.app[APP_KEY].state_by_wire("spot", wire)
    if st is None:
        raise KucoinError(400, "400100", "Unsupported trading pair.")
    return st


def _int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise KucoinError(400, "400100", f"{name} invalid") from None


async def server_time(request: web.Request) -> web.Response:
    return _json({"code": OK, "msg": "success", "data": request.app[APP_KEY].now_ms()})


async def status(request: web.Request) -> web.Response:
    return _ok({"status": "open", "msg": ""})


def _symbol(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": Kucoin.wire(inst), "name": Kucoin.wire(inst), "baseCurrency": inst.base, "quoteCurrency": inst.quote,
        "feeCurrency": inst.quote, "market": "USDS" if inst.quote in ("USDT", "USDC") else inst.quote,
        "baseMinSize": inst.step, "quoteMinSize": inst.min_notional, "baseMaxSize": "10000000000",
        "quoteMaxSize": "99999999", "baseIncrement": inst.step, "quoteIncrement": "0.000001",
        "priceIncrement": inst.tick, "priceLimitRate": "0.1", "minFunds": "0.1", "isMarginEnabled": False,
        "enableTrading": True, "feeCategory": 1, "makerFeeCoefficient": "1.00", "takerFeeCoefficient": "1.00",
        "st": False, "callauctionIsEnabled": False, "callauctionPriceFloor": None, "callauctionPriceCeiling": None,
        "callauctionFirstStageStartTime": None, "callauctionSecondStageStartTime": None,
        "callauctionThirdStageStartTime": None, "tradingStartTime": None,
    }


async def symbols(request: web.Request) -> web.Response:
    return _ok([_symbol(s.inst) for s in request.app[APP_KEY].states_of("spot")])


def _currency(code: str) -> dict[str, Any]:
    chain = {
        "chainName": code, "withdrawalMinSize": "0.001", "depositMinSize": "0.0001", "withdrawFeeRate": "0",
        "withdrawalMinFee": "0.0001", "isWithdrawEnabled": True, "isDepositEnabled": True, "confirms": 12,
        "preConfirms": 12, "contractAddress": "", "withdrawPrecision": 8, "maxWithdraw": None, "maxDeposit": None,
        "needTag": False, "chainId": code.lower(), "depositFeeRate": None, "withdrawMaxFee": None,
        "depositTierFee": None,
    }
    return {"currency": code, "name": code, "fullName": code, "precision": 8, "confirms": None,
            "contractAddress": None, "isMarginEnabled": False, "isDebitEnabled": False, "chains": [chain]}


def _codes(app: MarketApp) -> list[str]:
    return sorted({c for s in app.states_of("spot") for c in (s.inst.base, s.inst.quote)})


async def currencies(request: web.Request) -> web.Response:
    return _ok([_currency(c) for c in _codes(request.app[APP_KEY])])


async def currency(request: web.Request) -> web.Response:
    code = request.match_info["currency"].upper()
    if code not in _codes(request.app[APP_KEY]):
        raise KucoinError(400, "400100", "currency not exists")
    return _ok(_currency(code))


def _stats(app: MarketApp, st: MarketState) -> dict[str, Any]:
    """24 h statistics from the symbol's candles, in KuCoin's ``/market/stats`` fields."""
    i = st.inst
    now = app.now_ms()
    st.candles.ensure_until(now)
    first = max(st.candles.first or 0, now // MINUTE_MS - 1439)
    last = st.candles.last if st.candles.last is not None else first - 1
    o = h = lo = 0
    vol = 0
    qv = 0.0
    for m in range(first, last + 1):
        c = st.candles.minutes.get(m)
        if c is None:
            continue
        if not o:
            o, h, lo = c[1], c[2], c[3]
        h, lo = max(h, c[2]), min(lo, c[3])
        vol += c[5]
        qv += c[6]
    close = st.last_price()
    b = st.bbo()
    return {
        "time": now, "symbol": Kucoin.wire(i), "buy": _trim(i.format_price(b[0])), "sell": _trim(i.format_price(b[2])),
        "changeRate": f"{((close - o) / o) if o else 0:.4f}", "changePrice": _signed(i.format_price, close - o),
        "high": _trim(i.format_price(max(h, close))), "low": _trim(i.format_price(min(lo, close) if lo else close)),
        "vol": _trim(i.format_qty(vol)), "volValue": _trim(f"{qv:.8f}"), "last": _trim(i.format_price(close)),
        "averagePrice": _trim(f"{(qv / i.qty(vol)) if vol else i.price(close):.8f}"),
        "takerFeeRate": FEE_RATE, "makerFeeRate": FEE_RATE, "takerCoefficient": "1", "makerCoefficient": "1",
    }


def _snapshot(app: MarketApp, st: MarketState, ts_ms: int) -> dict[str, Any]:
    """The inner ``data`` of a ``/market/snapshot`` message (numbers, as KuCoin sends them there)."""
    s = _stats(app, st)
    return {"trading": True, "symbol": s["symbol"], "buy": float(s["buy"]), "sell": float(s["sell"]), "sort": 100,
            "volValue": float(s["volValue"]), "baseCurrency": st.inst.base, "market": "USDS",
            "quoteCurrency": st.inst.quote, "symbolCode": s["symbol"], "datetime": ts_ms, "high": float(s["high"]),
            "vol": float(s["vol"]), "low": float(s["low"]), "changePrice": float(s["changePrice"]),
            "changeRate": float(s["changeRate"]), "lastTradedPrice": float(s["last"]), "board": 0, "mark": 0}


async def all_tickers(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    rows = []
    for st in app.states_of("spot"):
        s = _stats(app, st)
        del s["time"]
        b = st.bbo()
        s.update(symbolName=s["symbol"], bestBidSize=_trim(st.inst.format_qty(b[1])),
                 bestAskSize=_trim(st.inst.format_qty(b[3])))
        rows.append(s)
    return _ok({"time": app.now_ms(), "ticker": rows})


async def stats(request: web.Request) -> web.Response:
    return _ok(_stats(request.app[APP_KEY], _state(request)))


async def level1(request: web.Request) -> web.Response:
    st = _state(request)
    i = st.inst
    b = st.bbo()
    last = st.trades[-1] if st.trades else None
    return _ok({"time": st.last_ts_ms, "sequence": str(st.last_update_id),
                "price": _trim(i.format_price(st.last_price())),
                "size": _trim(i.format_qty(last.qty_units if last else 0)), "bestBid": _trim(i.format_price(b[0])),
                "bestBidSize": _trim(i.format_qty(b[1])), "bestAsk": _trim(i.format_price(b[2])),
                "bestAskSize": _trim(i.format_qty(b[3]))})


def _book(request: web.Request, limit: int) -> web.Response:
    app = request.app[APP_KEY]
    st = _state(request)
    seq, bids, asks = app.depth_snapshot(st, limit)
    i = st.inst
    return _ok({"time": app.now_ms(), "sequence": str(seq),
                "bids": [[_trim(i.format_price(p)), _trim(i.format_qty(q))] for p, q in bids],
                "asks": [[_trim(i.format_price(p)), _trim(i.format_qty(q))] for p, q in asks]})


async def level2_20(request: web.Request) -> web.Response:
    return _book(request, 20)


async def level2_100(request: web.Request) -> web.Response:
    return _book(request, 100)


async def level2_full(request: web.Request) -> web.Response:
    if not request.headers.get("KC-API-KEY"):
        raise KucoinError(401, "400001", "Please check the header of your request for KC-API-KEY, KC-API-SIGN, "
                                         "KC-API-TIMESTAMP, KC-API-PASSPHRASE")
    return _book(request, 1_000_000)


async def histories(request: web.Request) -> web.Response:
    st = _state(request)
    i = st.inst
    rows = list(st.trades)[-HISTORIES:]
    return _ok([{"sequence": str(t.trade_id), "price": _trim(i.format_price(t.price_units)),
                 "size": _trim(i.format_qty(t.qty_units)), "side": "sell" if t.buyer_is_maker else "buy",
                 "time": t.ts_ms * 1_000_000} for t in rows])


def _candle_row(inst: Instrument, c: list) -> list[str]:
    fp = inst.format_price
    return [str(c[0] // 1000), _trim(fp(c[1])), _trim(fp(c[4])), _trim(fp(c[2])), _trim(fp(c[3])),
            _trim(inst.format_qty(c[5])), _trim(f"{c[6]:.8f}")]


async def candles(request: web.Request) -> web.Response:
    """Candles whose open is in ``[startAt, endAt)`` (seconds; 0 or absent: unbounded), newest first, at most
    1500 (the newest of the range)."""
    app = request.app[APP_KEY]
    st = _state(request)
    ktype = request.query.get("type", "")
    minutes = _TYPE_MINUTES.get(ktype)
    if minutes is None:
        raise KucoinError(400, "400100", f"type invalid: {ktype!r}; one of {', '.join(KLINE_TYPES.values())}")
    start_s, end_s = _int(request, "startAt") or 0, _int(request, "endAt") or 0
    book = st.candles
    book.ensure_until(app.now_ms())
    if book.first is None or book.last is None:
        return _ok([])
    period_s = minutes * 60
    first_b, last_b = book.first // minutes, book.last // minutes
    if start_s:
        first_b = max(first_b, -(-start_s // period_s))
    if end_s:
        last_b = min(last_b, (end_s - 1) // period_s)
    first_b = max(first_b, last_b - CANDLES_MAX + 1)
    rows = []
    for b in range(last_b, first_b - 1, -1):
        c = book.candle(minutes, b)
        if c is not None:
            rows.append(_candle_row(st.inst, c))
    return _ok(rows)


async def bullet_public(request: web.Request) -> web.Response:
    dialect = _dialect(request)
    token = secrets.token_urlsafe(48)
    dialect.tokens.add(token)
    return _ok({"token": token, "instanceServers": [{
        "endpoint": f"ws://{request.host}{WS_PATH}", "encrypt": False, "protocol": "websocket",
        "pingInterval": dialect.ping_interval_ms(), "pingTimeout": PING_TIMEOUT_MS}]})


def _rest_routes() -> list[web.RouteDef]:
    gets = {
        "/api/v1/timestamp": server_time, "/api/v1/status": status, "/api/v1/symbols": symbols,
        "/api/v2/symbols": symbols, "/api/v3/currencies": currencies, "/api/v3/currencies/{currency}": currency,
        "/api/v1/market/allTickers": all_tickers, "/api/v1/market/stats": stats,
        "/api/v1/market/orderbook/level1": level1, "/api/v1/market/orderbook/level2_20": level2_20,
        "/api/v1/market/orderbook/level2_100": level2_100, "/api/v3/market/orderbook/level2": level2_full,
        "/api/v1/market/histories": histories, "/api/v1/market/candles": candles,
    }
    return [web.get(path, h) for path, h in gets.items()]


@web.middleware
async def kucoin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """KuCoin's error bodies, and the REST faults (429, 5xx) on every REST request."""
    if not is_upgrade(request):
        fault = request.app[DIALECT_KEY].rest_fault(request)
        if fault == "rest429":
            return _json({"code": "429000", "msg": "Too many requests. System-level rate limit exceeded."},
                         status=429)
        if fault == "rest5xx":
            return _json({"code": "500000", "msg": "Internal Server Error"}, status=500)
    try:
        return await handler(request)
    except KucoinError as exc:
        return _json({"code": exc.code, "msg": exc.msg}, status=exc.status)
    except web.HTTPNotFound:
        return _json({"code": "404000", "msg": f"Url Not Found: {request.path} is not served by the local exchange"},
                     status=404)
    except web.HTTPMethodNotAllowed:
        return _json({"code": "405000", "msg": "Method Not Allowed"}, status=405)


# ---- websocket -----------------------------------------------------------------------------------------
def _topic_keys(app: MarketApp, topic: str) -> list[str] | None:
    """The per-symbol hub topics of a (comma-separated) KuCoin topic, or None if one is not served."""
    channel, sep, names = topic.partition(":")
    if channel not in _TOPICS or not sep or not names:
        return None
    keys = []
    for name in names.split(","):
        wire = name.strip()
        if channel == "/market/candles":
            wire, _, ktype = wire.rpartition("_")
            if ktype not in _TYPE_MINUTES:
                return None
            suffix = f"_{ktype}"
        else:
            suffix = ""
        if channel == "/market/ticker" and wire == "all":
            keys.append("/market/ticker:all")
            continue
        if app.state_by_wire("spot", wire) is None:
            return None
        keys.append(f"{channel}:{wire}{suffix}")
    return keys


def on_text(hub: Hub, conn: Connection, text: str) -> None:
    """Answer one client frame: ping -> pong, (un)subscribe -> ack (when asked for) or KuCoin's error."""
    try:
        req = json.loads(text)
        kind = req.get("type")
        rid = req.get("id")
    except (ValueError, AttributeError):
        conn.push(dumps({"type": "error", "code": 400, "data": "message is not valid JSON"}))
        return
    if kind == "ping":
        if not hub.app.noping_active(conn.opened):
            conn.push(dumps({"id": rid, "type": "pong", "timestamp": int(time.time() * 1e6)}))
        return
    if kind not in ("subscribe", "unsubscribe"):
        conn.push(dumps({"id": rid, "type": "error", "code": 415, "data": "type is not supported"}))
        return
    topic = str(req.get("topic") or "")
    keys = _topic_keys(hub.app, topic)
    if keys is None:
        conn.push(dumps({"id": rid, "type": "error", "code": 404, "data": f"topic {topic} is not found"}))
        return
    for key in keys:
        if kind == "subscribe":
            hub.add(conn, key)
        elif key in conn.subs:
            hub.remove(conn, key)
    if req.get("response"):
        conn.push(dumps({"id": rid, "type": "ack"}))


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """``/endpoint?token=...&connectId=...``: welcome, then requests until the socket closes."""
    if not is_upgrade(request):
        raise web.HTTPNotFound()
    hub = request.app[HUB_KEY]
    connect_id = request.query.get("connectId") or secrets.token_hex(5)
    if request.query.get("token") not in _dialect(request).tokens:
        ws = web.WebSocketResponse(autoping=False, compress=False)
        await ws.prepare(request)
        await ws.send_str(dumps({"id": connect_id, "type": "error", "code": 401, "data": "token is expired"}))
        await asyncio.sleep(0.05)  # let the client read the error before the close
        await ws.close()
        return ws

    def welcome(conn: Connection) -> None:
        conn.push(dumps({"id": connect_id, "type": "welcome"}))

    return await serve(request, lambda ws: Connection(ws, "spot"), lambda conn, text: on_text(hub, conn, text),
                       welcome)


__all__ = ["DIALECT", "Kucoin"]
