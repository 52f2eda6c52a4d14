"""Gate.io API v4 spot (ccxt id ``gate``) on the local exchange: public REST under ``/api/v4`` and the spot
websocket ``/ws/v4/``, in Gate's shapes (the fields ccxt 4.5.90's ``gate.py`` and ``pro/gate.py`` read).

REST (``/api/v4``; errors as Gate's ``{"label", "message"}`` with its HTTP status):
``spot/currency_pairs[/{pair}]`` (``precision`` and ``amount_precision`` are decimal places, so a tick or
lot step must be a power of ten), ``margin/currency_pairs`` (empty: nothing is listed for margin; ccxt's
``fetch_markets`` asks for it with the spot pairs), ``spot/currencies[/{currency}]``, ``spot/order_book``
(``limit`` <= 1000, ``with_id=true`` adds the book's update ``id``; ``current``/``update`` in ms),
``spot/candlesticks`` (rows ``[t s, quote volume, close, high, low, open, base volume, closed]``),
``spot/tickers``, ``spot/trades`` (newest first) and ``spot/time``.

Websocket (``/ws/v4/``; requests ``{"time", "id", "channel", "event": "subscribe"|"unsubscribe",
"payload"}`` answered ``{"result": {"status": "success"}}`` or ``{"error": {"code": 2, "message"}}``;
``spot.ping`` answered ``spot.pong``):

- ``spot.obu`` (order book v2, what ccxt 4.5.90 subscribes for spot), payload ``ob.BTC_USDT.400`` or
  ``ob.BTC_USDT.50``: the first message is the top-N book (``"full": true``, ``u``), then one message per
  100 ms step with a book change: ``U``/``u`` and the changes of the top-N *view* (levels that enter the
  window, change, or leave it with size 0), so a client's book is exactly the top N. Every step with a change
  sends a message (its ``b``/``a`` left out when the window did not change), so ``U == previous u + 1`` holds
  on the wire as Gate documents it. A second subscription of the same stream on one connection is refused
  (``Alert sub ob.X.50``, code 2), as Gate does. ccxt subscribes ``ob.X.50`` unless asked for ``limit=400``
  or given the option ``watchOrderBook.interval``; Helios sets ``"400"`` (``ccxt_options``): that is Gate's
  100 ms stream, our step, and deep enough for the top 100 the tests compare (Gate pushes ``.50`` every
  20 ms; here every stream moves on the 100 ms grid).
- ``spot.order_book_update`` (``[pair, "100ms"]``): full-depth diffs ``{"t", "e": "depthUpdate", "E", "s",
  "U", "u", "b", "a"}`` with Binance's ``U``/``u`` rule, synced from ``spot/order_book?with_id=true``. ccxt
  uses it only when its spot URL contains ``gateeu`` (a test points it at ``/ws/v4/?gateeu``); then it checks
  ``U``/``u`` itself and raises ``ChecksumError`` on a break.
- ``spot.trades`` (one trade per message: ``id`` per pair from 1, ``create_time``, ``create_time_ms``, ``side``
  = the taker's), ``spot.book_ticker`` (``t``, ``u``, ``b``/``B``/``a``/``A``; ccxt's ``watch_bids_asks``),
  ``spot.tickers`` (once a second), ``spot.candlesticks`` (``["1m", pair]``; the open candle once a second,
  the closed one with ``"w": true``; ``v`` is the quote volume and ``a`` the base amount, as on Gate: ccxt's
  ``watch_ohlcv`` reports ``v``, so its volumes are in quote currency where ``fetch_ohlcv``'s are in base).
- Pings: ccxt's gate client sends websocket protocol pings (the hub answers them); ``spot.ping`` text frames
  are answered too.

Update ids: the market's ``last_update_id`` is Gate's book id (REST ``id``, ``U``/``u``, ``book_ticker.u``);
``update_id`` is the base class's.

How the faults show (ccxt 4.5.90, ``spot.obu``):

- ``drop``, ``reorder``: a book message is missing or late: ``U != previous u + 1`` on the wire. ccxt does
  not check it on ``spot.obu`` (it only skips a message whose ``u`` is not above its book's): its book goes
  wrong silently until it subscribes again. Gate's rule is to resubscribe; Helios needs a frame check for it
  (``live/gate_book_check.py``, not written yet; tests/test_venue_gate.py holds the proposed one and shows
  that, run after ccxt applied the frame as the frame guard runs checks, it lets one broken book through).
- ``gap``: ids jump with no level lost: ccxt applies the next message and its book stays right; a raw client
  (or Helios's check) sees the jump.
- ``dup``: the message comes twice; ccxt skips the second (``u`` <= its nonce).
- ``crossed``: the server's own book is crossed for a second; every client shows it.
- ``malformed``: a truncated text frame; ccxt's read loop dies on it (a silent stall until it reconnects, or
  the feed's frame guard reconnects at once); the new subscription starts from a full book.
- ``disconnect``: every socket closed (1001); ccxt reconnects and gets a full book. ``noping``: protocol pings
  and ``spot.ping`` go unanswered; ccxt's keepalive times the connection out.
- ``rest429``/``rest5xx``: Gate's ``TOO_MANY_REQUESTS`` (429, ccxt ``RateLimitExceeded``) and ``SERVER_ERROR``
  (503, ccxt ``ExchangeNotAvailable``) on any REST call; ccxt's ``spot.obu`` book never calls REST, so they
  reach markets, candles, tickers and ``fetch_order_book`` (Freqtrade's path), not the live book.
- ``stale``: only ``spot/order_book`` snapshots are stale, so only the ``spot.order_book_update`` path sees it
  (ccxt's cached diffs start after the snapshot: it retries, then fails the sync). ``unsupported_faults``
  names ``stale`` and the REST faults for the live feed, whose book starts from a websocket snapshot.
- Fault opportunities are counted per book message sent, so a step that publishes two book streams of one
  pair (``.50`` and ``.400``, say) spends two; ``reorder`` holds one message per pair, whichever stream.

Not done: private endpoints and channels (orders, balances: a dry-run needs none), margin, futures
(``fx-ws``), ``ob.X.50`` at 20 ms, ``spot.order_book`` (the periodic top-N snapshots channel),
``spot.order_book_update`` at ``1000ms``, the 10s and 7d candles, ``trades`` paging by ``page``, Gate's
venue-wide trade id counter (ids here count per pair, as ``sequence_id`` does on Gate).
"""

from __future__ import annotations

import heapq
import json
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from helios_orderflow.core.errors import ConfigError, HeliosError
from helios_orderflow.emulator.app import APP_KEY, MarketApp, dumps
from helios_orderflow.emulator.dialects.base import DIALECT_KEY, Dialect, Middleware
from helios_orderflow.emulator.hub import Connection, Hub, is_upgrade, serve
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import INTERVALS, MINUTE_MS
from helios_orderflow.emulator.market import Batch, Diff, MarketState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

MARKET = "spot"
API = "/api/v4"
#: ``spot.obu`` depths Gate serves (``ob.{pair}.{level}``)
OBU_LEVELS = (50, 400)
BOOK_INTERVALS = ("100ms",)  # spot.order_book_update intervals served
ORDER_BOOK_MAX = 1000
#: Gate's candle intervals that the candle book can build (Gate also has 10s, 7d, 30d)
CANDLE_INTERVALS = tuple(i for i in ("1m", "5m", "15m", "30m", "1h", "4h", "8h", "1d") if i in INTERVALS)
#: ``urls.api.public``/``private`` sections ccxt's gate client addresses (each is ``{base}/api/v4``)
_REST_SECTIONS = ("wallet", "futures", "margin", "delivery", "spot", "options", "sub_accounts", "earn",
                  "withdrawals", "subAccounts", "unified", "rebate", "account", "loan", "otc")

Levels = list[tuple[int, int]]


class GateError(Exception):
    """A REST error in Gate's shape: HTTP ``status`` with ``{"label": label, "message": message}``."""

    def __init__(self, status: int, label: str, message: str) -> None:
        super().__init__(message)
        self.status, self.label, self.message = status, label, message


def _trim(text: str) -> str:
    """Gate's number strings carry no trailing zeros (``"60000.1"``, ``"42"``)."""
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _decimals(step: str) -> int:
    """The decimal places of a tick or lot step that is a power of ten (``"0.001"`` -> 3, ``"1"`` -> 0)."""
    _, digits, exponent = Decimal(step).normalize().as_tuple()
    if digits != (1,) or not isinstance(exponent, int) or exponent > 0:
        raise ConfigError(f"Gate lists prices and amounts by decimal places, so a tick or lot step must be a power "
                          f"of ten no larger than 1; {step!r} is not")
    return -exponent


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise GateError(400, "INVALID_PARAM_VALUE", f"invalid argument: {name} {raw!r} is not an integer") from None


def _state(request: web.Request, name: str = "currency_pair") -> MarketState:
    wire = request.query.get(name) or request.match_info.get(name)
    if not wire:
        raise GateError(400, "MISSING_REQUIRED_PARAM", f"Missing required parameter: {name}")
    st = request.app[APP_KEY].state_by_wire(MARKET, wire.upper())
    if st is None:
        raise GateError(400, "INVALID_CURRENCY_PAIR", f"Invalid currency pair {wire}")
    return st


def _levels(inst: Instrument, levels: Levels) -> list[list[str]]:
    fp, fq = inst.format_price, inst.format_qty
    return [[_trim(fp(p)), _trim(fq(q))] for p, q in levels]


def _levels_text(inst: Instrument, levels: Levels) -> str:
    fp, fq = inst.format_price, inst.format_qty
    return ",".join(f'["{_trim(fp(p))}","{_trim(fq(q))}"]' for p, q in levels)


def _day_stats(app: MarketApp, st: MarketState) -> tuple[int, int, int, int, int, float]:
    """The last 24 h of 1m candles: (open, high, low, close) in price units, base volume in qty units, quote
    volume."""
    now = app.now_ms()
    st.candles.ensure_until(now)
    first = max(st.candles.first or 0, now // MINUTE_MS - 1439)
    last = st.candles.last if st.candles.last is not None else first
    o = h = lo = cl = vol = 0
    qv = 0.0
    for m in range(first, last + 1):
        c = st.candles.minutes.get(m)
        if c is None:
            continue
        if not o:
            o, h, lo = c[1], c[2], c[3]
        h, lo, cl = max(h, c[2]), min(lo, c[3]), c[4]
        vol += c[5]
        qv += c[6]
    return o, h, lo, cl or st.last_price(), vol, qv


def _quote(value: float) -> str:
    return _trim(f"{value:.8f}")


# ---- REST ---------------------------------------------------------------------------------------------
def _pair_row(st: MarketState) -> dict[str, Any]:
    i = st.inst
    return {
        "id": Gate.wire(i), "base": i.base, "base_name": i.base, "quote": i.quote, "quote_name": i.quote,
        "fee": "0.2", "min_base_amount": _trim(i.step), "min_quote_amount": _trim(i.min_notional),
        "max_base_amount": "", "max_quote_amount": "5000000", "amount_precision": _decimals(i.step),
        "precision": _decimals(i.tick), "trade_status": "tradable", "sell_start": 0, "buy_start": 0,
        "delisting_time": 0, "type": "normal", "trade_url": f"https://www.gate.io/trade/{Gate.wire(i)}",
        "st_tag": False,
    }


async def currency_pairs(request: web.Request) -> web.Response:
    if request.match_info.get("currency_pair"):
        return _json(_pair_row(_state(request)))
    return _json([_pair_row(st) for st in request.app[APP_KEY].states_of(MARKET)])


async def margin_pairs(request: web.Request) -> web.Response:
    return _json([])  # no pair is listed for margin trading


def _currency_row(code: str) -> dict[str, Any]:
    chain = {"name": code, "addr": "", "withdraw_disabled": False, "withdraw_delayed": False,
             "deposit_disabled": False}
    return {"currency": code, "name": code, "delisted": False, "withdraw_disabled": False, "withdraw_delayed": False,
            "deposit_disabled": False, "trade_disabled": False, "fixed_rate": "", "chain": code, "chains": [chain]}


async def currencies(request: web.Request) -> web.Response:
    codes = sorted({c for st in request.app[APP_KEY].states_of(MARKET) for c in (st.inst.base, st.inst.quote)})
    one = request.match_info.get("currency")
    if one:
        if one.upper() not in codes:
            raise GateError(400, "INVALID_CURRENCY", f"Invalid currency {one}")
        return _json(_currency_row(one.upper()))
    return _json([_currency_row(c) for c in codes])


async def server_time(request: web.Request) -> web.Response:
    return _json({"server_time": request.app[APP_KEY].now_ms()})


async def order_book(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    st = _state(request)
    limit = _int(request, "limit", 10) or 10
    if not 1 <= limit <= ORDER_BOOK_MAX:
        raise GateError(400, "INVALID_PARAM_VALUE", f"invalid argument: limit must be 1..{ORDER_BOOK_MAX}")
    if request.query.get("interval", "0") != "0":
        raise GateError(400, "INVALID_PARAM_VALUE", "invalid argument: interval (only 0, no merging, is served)")
    last_id, bids, asks = app.depth_snapshot(st, limit)
    body: dict[str, Any] = {}
    if request.query.get("with_id", "").lower() == "true":
        body["id"] = last_id
    body.update(current=app.now_ms(), update=st.last_ts_ms, asks=_levels(st.inst, asks), bids=_levels(st.inst, bids))
    return _json(body)


def _candle_row(st: MarketState, c: list, closed: bool) -> list[str]:
    i = st.inst
    return [str(c[0] // 1000), _quote(c[6]), _trim(i.format_price(c[4])), _trim(i.format_price(c[2])),
            _trim(i.format_price(c[3])), _trim(i.format_price(c[1])), _trim(i.format_qty(c[5])),
            "true" if closed else "false"]


async def candlesticks(request: web.Request) -> web.Response:
    """Gate's rules: ``limit`` (default 100, at most 1000) recent candles, or those opening in
    [``from``, ``to``] (seconds), at most 1000 of them; the open candle last, ``closed`` false."""
    app = request.app[APP_KEY]
    st = _state(request)
    interval = request.query.get("interval", "30m")
    if interval not in CANDLE_INTERVALS:
        raise GateError(400, "INVALID_PARAM_VALUE",
                        f"invalid argument: interval {interval!r}; served: {', '.join(CANDLE_INTERVALS)}")
    limit = _int(request, "limit", 100) or 100
    if not 1 <= limit <= 1000:
        raise GateError(400, "INVALID_PARAM_VALUE", "invalid argument: limit must be 1..1000")
    start_s, end_s = _int(request, "from"), _int(request, "to")
    now = app.now_ms()
    st.candles.ensure_until(now)
    try:
        rows = st.candles.klines(interval, start_s * 1000 if start_s is not None else None,
                                 end_s * 1000 if end_s is not None else None, 1000 if start_s is not None else limit)
    except HeliosError:
        raise GateError(400, "INVALID_PARAM_VALUE", f"invalid argument: interval {interval!r}") from None
    span = INTERVALS[interval] * MINUTE_MS
    return _json([_candle_row(st, c, c[0] + span <= now) for c in rows])


def _ticker_row(app: MarketApp, st: MarketState) -> dict[str, Any]:
    i = st.inst
    o, h, lo, cl, vol, qv = _day_stats(app, st)
    b = st.bbo()
    change = f"{(cl - o) / o * 100:.2f}" if o else "0"
    fp = i.format_price
    return {
        "currency_pair": Gate.wire(i), "last": _trim(fp(cl)), "lowest_ask": _trim(fp(b[2])),
        "lowest_size": _trim(i.format_qty(b[3])), "highest_bid": _trim(fp(b[0])),
        "highest_size": _trim(i.format_qty(b[1])), "change_percentage": change, "change_utc0": change,
        "change_utc8": change, "base_volume": _trim(i.format_qty(vol)), "quote_volume": _quote(qv),
        "high_24h": _trim(fp(h)), "low_24h": _trim(fp(lo)), "etf_net_value": "", "etf_pre_net_value": None,
        "etf_pre_timestamp": None, "etf_leverage": None,
    }


async def tickers(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    states = [_state(request)] if request.query.get("currency_pair") else app.states_of(MARKET)
    return _json([_ticker_row(app, st) for st in states])


def _trade_row(st: MarketState, t: Any) -> dict[str, Any]:
    i = st.inst
    return {"id": str(t.trade_id), "create_time": str(t.ts_ms // 1000), "create_time_ms": f"{t.ts_ms}.000",
            "currency_pair": Gate.wire(i), "side": "sell" if t.buyer_is_maker else "buy",
            "amount": _trim(i.format_qty(t.qty_units)), "price": _trim(i.format_price(t.price_units)),
            "sequence_id": str(t.trade_id)}


async def trades(request: web.Request) -> web.Response:
    """Newest first; ``last_id`` pages older trades with ``reverse=true``, newer ones otherwise; ``from``/``to``
    (seconds) bound ``create_time``. Only the last 1000 trades of a pair are kept."""
    st = _state(request)
    limit = _int(request, "limit", 100) or 100
    if not 1 <= limit <= 1000:
        raise GateError(400, "INVALID_PARAM_VALUE", "invalid argument: limit must be 1..1000")
    last_id = _int(request, "last_id")
    start_s, end_s = _int(request, "from"), _int(request, "to")
    rows = list(st.trades)
    if start_s is not None:
        rows = [t for t in rows if t.ts_ms // 1000 >= start_s]
    if end_s is not None:
        rows = [t for t in rows if t.ts_ms // 1000 <= end_s]
    if last_id is not None:
        if request.query.get("reverse", "").lower() == "true":
            rows = [t for t in rows if t.trade_id < last_id][-limit:]
        else:
            rows = [t for t in rows if t.trade_id > last_id][:limit]
    else:
        rows = rows[-limit:]
    return _json([_trade_row(st, t) for t in reversed(rows)])


def _rest_routes() -> list[web.RouteDef]:
    spot = {
        "currency_pairs": currency_pairs, "currency_pairs/{currency_pair}": currency_pairs,
        "currencies": currencies, "currencies/{currency}": currencies, "order_book": order_book,
        "candlesticks": candlesticks, "tickers": tickers, "trades": trades, "time": server_time,
    }
    out = [web.get(f"{API}/spot/{path}", handler) for path, handler in spot.items()]
    out += [web.get(f"{API}/margin/currency_pairs", margin_pairs),
            web.get(f"{API}/margin/uni/currency_pairs", margin_pairs)]
    return out


@web.middleware
async def gate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gate's error bodies, and the REST faults (429, 503) on its REST paths."""
    if request.path.startswith(API) and not is_upgrade(request):
        fault = request.app[DIALECT_KEY].rest_fault(request)
        if fault == "rest429":
            return _json({"label": "TOO_MANY_REQUESTS", "message": "Request Rate Limit Exceeded"}, status=429,
                         headers={"Retry-After": "1"})
        if fault == "rest5xx":
            return _json({"label": "SERVER_ERROR", "message": "Internal server error, please try again later"},
                         status=503)
    try:
        return await handler(request)
    except GateError as exc:
        return _json({"label": exc.label, "message": exc.message}, status=exc.status)
    except web.HTTPNotFound:
        return _json({"label": "NOT_FOUND", "message": f"no such endpoint on the local exchange: {request.path}"},
                     status=404)


# ---- websocket ------------------------------------------------------------------------------------------
class _Rejected(Exception):
    """A subscribe/unsubscribe request Gate answers with an error (code 1 malformed, 2 invalid argument)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Gate(Dialect):
    name = "gate"
    markets = ("spot",)
    # ccxt's spot.obu book starts from a websocket snapshot and never calls REST: on the live feed a stale REST
    # snapshot or a REST error cannot show (they do reach REST callers; see the module docstring)
    unsupported_faults = ("stale", "rest429", "rest5xx")

    def __init__(self, app: MarketApp, hub: Hub) -> None:
        super().__init__(app, hub)
        for st in app.states_of(MARKET):  # Gate lists ticks and lots as decimal places
            _decimals(st.inst.tick)
            _decimals(st.inst.step)
        #: spot.obu: (symbol, level) -> the top-N (bids, asks) every subscriber of the stream holds
        self._views: dict[tuple[str, int], tuple[dict[int, int], dict[int, int]]] = {}
        self._candle_sent: dict[tuple[str, str], int] = {}  # (symbol, interval) -> bucket last sent

    # ---- naming and client configuration ---------------------------------------------------------------
    @staticmethod
    def wire(inst: Instrument) -> str:
        return f"{inst.base}_{inst.quote}"

    @classmethod
    def ccxt_urls(cls, base: str) -> dict[str, Any]:
        rest = f"{base}{API}"
        wsb = base.replace("http://", "ws://", 1)
        return {"api": {"public": dict.fromkeys(_REST_SECTIONS, rest), "private": dict.fromkeys(_REST_SECTIONS, rest),
                        "spot": f"{wsb}/ws/v4/"}}

    @classmethod
    def ccxt_options(cls, market: str) -> dict[str, Any]:
        # spot markets only (ccxt loads swap, future and option markets by default); the 400-level book stream
        # (Gate's 100 ms one) instead of ccxt's default ob.X.50 (20 ms on Gate, 50 levels)
        return {"fetchMarkets": {"types": ["spot"]}, "watchOrderBook": {"interval": "400"}}

    @classmethod
    def endpoints(cls, base: str) -> str:
        return f"REST {base}{API}; websocket {base.replace('http://', 'ws://', 1)}/ws/v4/"

    def routes(self) -> list[web.RouteDef]:
        return [*_rest_routes(), web.get("/ws/v4/", handle_ws), web.get("/ws/v4", handle_ws)]

    def middlewares(self) -> list[Middleware]:
        return [gate_errors]

    # ---- subscriptions -------------------------------------------------------------------------------------
    def on_text(self, conn: Connection, text: str) -> None:
        """Answer one text frame: a subscribe/unsubscribe ack or error, a pong; never drops the connection."""
        now = self.app.now_ms()
        try:
            req = json.loads(text)
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            conn.push(dumps({"time": now // 1000, "time_ms": now, "channel": "", "event": "",
                             "error": {"code": 1, "message": "invalid request body format"}, "result": None}))
            return
        channel, event, rid = req.get("channel"), req.get("event"), req.get("id")
        head: dict[str, Any] = {"time": now // 1000, "time_ms": now}
        if rid is not None:
            head["id"] = rid
        trace = uuid.uuid4().hex
        head.update(conn_id=conn.data.setdefault("conn_id", uuid.uuid4().hex[:16]), trace_id=trace)
        if channel == "spot.ping":
            if not self.app.noping_active(conn.opened):
                conn.push(dumps({**head, "channel": "spot.pong", "event": "", "result": None, "requestId": trace}))
            return
        payload = req.get("payload")
        reply = {**head, "channel": channel, "event": event, "payload": payload}
        try:
            if event not in ("subscribe", "unsubscribe"):
                raise _Rejected(1, f"unknown event {event!r}")
            if not isinstance(payload, list) or not all(isinstance(p, str) for p in payload):
                raise _Rejected(2, "invalid argument: payload must be a list of strings")
            topics = self._topics(str(channel), payload)
            if event == "subscribe":
                self._subscribe(conn, str(channel), topics, reply)
                return
            for topic, _ in topics:
                if topic in conn.subs:
                    self.hub.remove(conn, topic)
            conn.push(dumps({**reply, "result": {"status": "success"}, "requestId": trace}))
        except _Rejected as exc:
            conn.push(dumps({**reply, "error": {"code": exc.code, "message": exc.message},
                             "result": {"status": "fail"}, "requestId": trace}))

    def _topics(self, channel: str, payload: list[str]) -> list[tuple[str, MarketState]]:
        """The hub topics a request names, with their pair's state; ``_Rejected`` for anything not served."""
        app = self.app

        def pair(wire: str) -> MarketState:
            st = app.state_by_wire(MARKET, wire)
            if st is None:
                raise _Rejected(2, f"unknown currency pair: {wire}")
            return st

        if channel == "spot.obu":
            out = []
            for name in payload:
                prefix, _, rest = name.partition(".")
                wire, _, level = rest.rpartition(".")
                if prefix != "ob" or not level.isdigit() or int(level) not in OBU_LEVELS:
                    raise _Rejected(2, f"invalid argument: {name!r} (ob.{{pair}}.{{50|400}})")
                out.append((name, pair(wire)))
            return out
        if channel == "spot.order_book_update":
            if len(payload) < 2 or payload[1] not in BOOK_INTERVALS:
                raise _Rejected(2, f"invalid argument: {payload!r} ([pair, interval], interval one of "
                                   f"{', '.join(BOOK_INTERVALS)})")
            return [(f"{channel}:{payload[0]}:{payload[1]}", pair(payload[0]))]
        if channel in ("spot.trades", "spot.book_ticker", "spot.tickers"):
            return [(f"{channel}:{w}", pair(w)) for w in payload]
        if channel == "spot.candlesticks":
            if len(payload) != 2 or payload[0] not in CANDLE_INTERVALS:
                raise _Rejected(2, f"invalid argument: {payload!r} ([interval, pair], interval one of "
                                   f"{', '.join(CANDLE_INTERVALS)})")
            return [(f"{channel}:{payload[0]}_{payload[1]}", pair(payload[1]))]
        raise _Rejected(2, f"unknown channel {channel!r}")

    def _subscribe(self, conn: Connection, channel: str, topics: list[tuple[str, MarketState]],
                   reply: dict[str, Any]) -> None:
        if channel == "spot.obu":
            for topic, _ in topics:
                if topic in conn.subs:
                    raise _Rejected(2, f"Alert sub {topic}")
        conn.push(dumps({**reply, "result": {"status": "success"}, "requestId": reply["trace_id"]}))
        for topic, st in topics:
            self.hub.add(conn, topic)
            if channel == "spot.obu":
                # The full book first, from the view every subscriber of the stream holds; between two steps the
                # view is the book's current top N and the book's last id is the id it is at.
                conn.push(self._obu_full(st, topic, int(topic.rpartition(".")[2])))

    # ---- spot.obu ------------------------------------------------------------------------------------------
    def _view(self, st: MarketState, level: int) -> tuple[dict[int, int], dict[int, int]]:
        key = (st.inst.symbol, level)
        view = self._views.get(key)
        if view is None:
            bids, asks = st.top(level)
            view = self._views[key] = (dict(bids), dict(asks))
        return view

    def _obu_full(self, st: MarketState, topic: str, level: int) -> str:
        bids, asks = self._view(st, level)
        inst, now = st.inst, self.app.now_ms()
        b = _levels_text(inst, sorted(bids.items(), reverse=True))
        a = _levels_text(inst, sorted(asks.items()))
        return (f'{{"channel":"spot.obu","result":{{"t":{now},"full":true,"s":"{topic}","u":{st.last_update_id},'
                f'"b":[{b}],"a":[{a}]}},"time_ms":{now},"event":"update"}}')

    @staticmethod
    def _window_changes(view: dict[int, int], changed: Levels, book: dict[int, int], level: int,
                        is_bid: bool) -> Levels:
        """The changes that take a top-``level`` view of one side from ``view`` to ``book``'s top (``view`` is
        updated): levels entering or changing with their size, levels leaving with 0; best first."""
        if not changed:
            return []
        if len(view) >= level:  # a full window: a change beyond its edge cannot reach it
            edge = min(view) if is_bid else max(view)
            if all((p < edge) if is_bid else (p > edge) for p, _ in changed):
                return []
        top = dict(heapq.nlargest(level, book.items()) if is_bid else heapq.nsmallest(level, book.items()))
        out = [(p, q) for p, q in top.items() if view.get(p) != q]
        out += [(p, 0) for p in view if p not in top]
        view.clear()
        view.update(top)
        out.sort(reverse=is_bid)
        return out

    def _publish_obu(self, st: MarketState, d: Diff, ts_ms: int, elapsed: float) -> None:
        inst, sym = st.inst, st.inst.symbol
        for level in OBU_LEVELS:
            topic = f"ob.{self.wire(inst)}.{level}"
            if not self.hub.subscribers(MARKET, topic):
                self._views.pop((sym, level), None)
                continue
            vb, va = self._view(st, level)
            b = self._window_changes(vb, d.bids, st.bids, level, True)
            a = self._window_changes(va, d.asks, st.asks, level, False)
            sides = (f',"b":[{_levels_text(inst, b)}]' if b else "") + (f',"a":[{_levels_text(inst, a)}]' if a else "")
            self.send_diff(st, topic, (
                f'{{"channel":"spot.obu","result":{{"t":{ts_ms},"s":"{topic}","U":{d.first_id},"u":{d.last_id}'
                f'{sides}}},"time_ms":{ts_ms},"event":"update"}}'), elapsed)

    # ---- one step's messages -------------------------------------------------------------------------------
    def publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        inst, hub = st.inst, self.hub
        wire = self.wire(inst)
        sec = ts_ms // 1000
        if batch.diff is not None:
            d = batch.diff
            self._publish_obu(st, d, ts_ms, elapsed)
            for interval in BOOK_INTERVALS:
                topic = f"spot.order_book_update:{wire}:{interval}"
                if hub.subscribers(MARKET, topic):
                    self.send_diff(st, topic, (
                        f'{{"time":{sec},"time_ms":{ts_ms},"channel":"spot.order_book_update","event":"update",'
                        f'"result":{{"t":{ts_ms},"e":"depthUpdate","E":{sec},"s":"{wire}","U":{d.first_id},'
                        f'"u":{d.last_id},"b":[{_levels_text(inst, d.bids)}],"a":[{_levels_text(inst, d.asks)}]}}}}'),
                        elapsed)
        if batch.trades:
            topic = f"spot.trades:{wire}"
            if hub.subscribers(MARKET, topic):
                for t in batch.trades:
                    hub.publish(MARKET, topic, (
                        f'{{"time":{sec},"time_ms":{ts_ms},"channel":"spot.trades","event":"update","result":'
                        f'{{"id":{t.trade_id},"create_time":{t.ts_ms // 1000},"create_time_ms":"{t.ts_ms}.000",'
                        f'"side":"{"sell" if t.buyer_is_maker else "buy"}","currency_pair":"{wire}",'
                        f'"amount":"{_trim(inst.format_qty(t.qty_units))}",'
                        f'"price":"{_trim(inst.format_price(t.price_units))}","range":"{t.trade_id}-{t.trade_id}"}}}}'))
        if batch.bbo_changed:
            topic = f"spot.book_ticker:{wire}"
            if hub.subscribers(MARKET, topic):
                b = st.bbo()
                fp, fq = inst.format_price, inst.format_qty
                hub.publish(MARKET, topic, (
                    f'{{"time":{sec},"time_ms":{ts_ms},"channel":"spot.book_ticker","event":"update","result":'
                    f'{{"t":{ts_ms},"u":{st.last_update_id},"s":"{wire}","b":"{_trim(fp(b[0]))}",'
                    f'"B":"{_trim(fq(b[1]))}","a":"{_trim(fp(b[2]))}","A":"{_trim(fq(b[3]))}"}}}}'))
        if ts_ms % 1000 == 0:
            self._publish_each_second(st, ts_ms)

    def _publish_each_second(self, st: MarketState, ts_ms: int) -> None:
        inst, hub = st.inst, self.hub
        wire = self.wire(inst)
        head = f'{{"time":{ts_ms // 1000},"time_ms":{ts_ms},'
        topic = f"spot.tickers:{wire}"
        if hub.subscribers(MARKET, topic):
            row = _ticker_row(self.app, st)
            keep = ("currency_pair", "last", "lowest_ask", "highest_bid", "change_percentage", "base_volume",
                    "quote_volume", "high_24h", "low_24h")
            hub.publish(MARKET, topic, f'{head}"channel":"spot.tickers","event":"update","result":'
                                       f'{dumps({k: row[k] for k in keep})}}}')
        for interval in CANDLE_INTERVALS:
            topic = f"spot.candlesticks:{interval}_{wire}"
            if not hub.subscribers(MARKET, topic):
                continue
            minutes = INTERVALS[interval]
            st.candles.ensure_until(ts_ms)
            bucket = ts_ms // MINUTE_MS // minutes
            key = (inst.symbol, interval)
            last = self._candle_sent.get(key)
            self._candle_sent[key] = bucket
            if last is not None and last != bucket:
                closed = st.candles.candle(minutes, last)
                if closed is not None:
                    hub.publish(MARKET, topic, f'{head}"channel":"spot.candlesticks","event":"update","result":'
                                               f'{self._candle(st, closed, interval, True)}}}')
            current = st.candles.candle(minutes, bucket)
            if current is not None:
                hub.publish(MARKET, topic, f'{head}"channel":"spot.candlesticks","event":"update","result":'
                                           f'{self._candle(st, current, interval, False)}}}')

    def _candle(self, st: MarketState, c: list, interval: str, closed: bool) -> str:
        self.app.log.kline_messages += 1
        i = st.inst
        fp = i.format_price
        return dumps({"t": str(c[0] // 1000), "v": _quote(c[6]), "c": _trim(fp(c[4])), "h": _trim(fp(c[2])),
                      "l": _trim(fp(c[3])), "o": _trim(fp(c[1])), "n": f"{interval}_{self.wire(i)}",
                      "a": _trim(i.format_qty(c[5])), "w": closed})


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """``/ws/v4/``: one spot connection; subscriptions by request (any query string is ignored, so a client can
    be pointed at ``/ws/v4/?gateeu`` to make ccxt take its EU code path)."""
    if not is_upgrade(request):
        return _json({"label": "NOT_FOUND", "message": "websocket endpoint: connect with a websocket client"},
                     status=404)
    dialect = request.app[DIALECT_KEY]
    assert isinstance(dialect, Gate)

    def on_open(conn: Connection) -> None:
        conn.data["conn_id"] = uuid.uuid4().hex[:16]

    return await serve(request, lambda ws: Connection(ws, MARKET), dialect.on_text, on_open)


DIALECT = Gate
