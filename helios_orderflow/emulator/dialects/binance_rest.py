"""Binance's REST API on the local exchange: spot ``/api/v3`` and USD-M futures ``/fapi`` public market data,
in Binance's JSON shapes (the fields ccxt's ``binance.py`` reads).

Spot: ``ping``, ``time``, ``exchangeInfo``, ``depth`` (limit <= 5000), ``klines``/``uiKlines``, ``ticker/24hr``,
``ticker/bookTicker``, ``ticker/price``, ``avgPrice``, ``trades``, ``historicalTrades``, ``aggTrades``.
Futures (``/fapi/v1``, ``/fapi/v2`` for prices): the same plus ``premiumIndex``, ``fundingRate``,
``markPriceKlines``, ``indexPriceKlines``, ``openInterest``. Errors use Binance's ``{"code", "msg"}`` bodies.
Handlers read the market, clock, faults
and log from ``request.app[APP_KEY]`` (``app.MarketApp``), never from the server module.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.emulator.app import APP_KEY, MarketApp, dumps
from helios_orderflow.emulator.dialects.base import DIALECT_KEY
from helios_orderflow.emulator.hub import is_upgrade
from helios_orderflow.emulator.klines import MINUTE_MS
from helios_orderflow.emulator.market import MarketState

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

SPOT_DEPTH_MAX = 5000
FAPI_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps(data), status=status, content_type="application/json", headers=headers)


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(
            400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        ) from None


def _market(request: web.Request) -> str:
    return "linear" if request.path.startswith("/fapi") else "spot"


def _state(request: web.Request, required: bool = True) -> MarketState | None:
    app = request.app[APP_KEY]
    wire = request.query.get("symbol") or request.query.get("pair")
    if wire is None:
        if required:
            raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        return None
    state = app.state_by_wire(_market(request), wire.upper())
    if state is None:
        raise BinanceError(400, -1121, "Invalid symbol.")
    return state


def _states(request: web.Request) -> list[MarketState]:
    """The symbol named by ``symbol``, or the ``symbols=["A","B"]`` list, or every symbol."""
    app = request.app[APP_KEY]
    one = _state(request, required=False)
    if one is not None:
        return [one]
    raw = request.query.get("symbols")
    market = _market(request)
    if raw:
        names = [s.strip().strip('"') for s in raw.strip("[]").split(",") if s.strip()]
        out = []
        for n in names:
            st = app.state_by_wire(market, n.upper())
            if st is None:
                raise BinanceError(400, -1121, "Invalid symbol.")
            out.append(st)
        return out
    return app.states_of(market)


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---- handlers ----------------------------------------------------------------------------------
async def ping(request: web.Request) -> web.Response:
    return _json({})


async def server_time(request: web.Request) -> web.Response:
    return _json({"serverTime": request.app[APP_KEY].now_ms()})


def _spot_symbol(st: MarketState) -> dict:
    i = st.inst
    return {
        "symbol": i.wire, "status": "TRADING", "baseAsset": i.base, "baseAssetPrecision": 8,
        "quoteAsset": i.quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                       "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True, "cancelReplaceAllowed": True, "amendAllowed": True,
        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": i.format_price(i.tick_units),
             "maxPrice": i.format_price(i.tick_units * 10**8), "tickSize": i.format_price(i.tick_units)},
            {"filterType": "LOT_SIZE", "minQty": i.format_qty(i.step_units), "maxQty": "9000000.00000000",
             "stepSize": i.format_qty(i.step_units)},
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "9000000.00000000",
             "stepSize": "0.00000000"},
            {"filterType": "TRAILING_DELTA", "minTrailingAboveDelta": 10, "maxTrailingAboveDelta": 2000,
             "minTrailingBelowDelta": 10, "maxTrailingBelowDelta": 2000},
            {"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "5", "bidMultiplierDown": "0.2",
             "askMultiplierUp": "5", "askMultiplierDown": "0.2", "avgPriceMins": 5},
            {"filterType": "NOTIONAL", "minNotional": f"{float(i.min_notional):.8f}", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _fapi_symbol(st: MarketState) -> dict:
    i = st.inst
    return {
        "symbol": i.wire, "pair": i.wire, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": i.base, "quoteAsset": i.quote, "marginAsset": i.quote,
        "pricePrecision": i.price_decimals, "quantityPrecision": i.qty_decimals, "baseAssetPrecision": 8,
        "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
        "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": i.format_price(i.tick_units),
             "maxPrice": i.format_price(i.tick_units * 10**8), "tickSize": i.tick},
            {"filterType": "LOT_SIZE", "minQty": i.step, "maxQty": "1000000", "stepSize": i.step},
            {"filterType": "MARKET_LOT_SIZE", "minQty": i.step, "maxQty": "1000000", "stepSize": i.step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": i.min_notional},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


async def exchange_info(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    market = _market(request)
    states = app.states_of(market)
    body: dict = {"timezone": "UTC", "serverTime": app.now_ms(), "rateLimits": _RATE_LIMITS,
                  "exchangeFilters": []}
    if market == "spot":
        body["symbols"] = [_spot_symbol(s) for s in states]
    else:
        body["futuresType"] = "U_MARGINED"
        assets = sorted({s.inst.quote for s in states})
        body["assets"] = [{"asset": a, "marginAvailable": True, "autoAssetExchange": "0"} for a in assets]
        body["symbols"] = [_fapi_symbol(s) for s in states]
    return _json(body)


async def depth(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    st = _state(request)
    assert st is not None
    market = _market(request)
    limit = _int(request, "limit", 100 if market == "spot" else 500) or 100
    if market == "spot" and not 1 <= limit <= SPOT_DEPTH_MAX:
        raise BinanceError(
            400, -1100, f"Illegal characters found in parameter 'limit'; legal range is '1 to {SPOT_DEPTH_MAX}'."
        )
    if market == "linear":
        limit = min((x for x in FAPI_DEPTH_LIMITS if x >= limit), default=1000)
    snap = app.depth_snapshot(st, limit)
    i = st.inst
    body: dict = {"lastUpdateId": snap[0]}
    if market == "linear":
        body["E"] = st.last_ts_ms
        body["T"] = st.last_ts_ms
    body["bids"] = [[i.format_price(p), i.format_qty(q)] for p, q in snap[1]]
    body["asks"] = [[i.format_price(p), i.format_qty(q)] for p, q in snap[2]]
    return _json(body)


async def klines(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    st = _state(request)
    assert st is not None
    interval = request.query.get("interval")
    if not interval:
        raise BinanceError(400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
    max_limit = 1000 if _market(request) == "spot" else 1500
    limit = max(1, min(_int(request, "limit", 500) or 500, max_limit))
    st.candles.ensure_until(app.now_ms())
    try:
        rows = st.candles.klines(interval, _int(request, "startTime"), _int(request, "endTime"), limit)
    except HeliosError:
        raise BinanceError(400, -1120, "Invalid interval.") from None
    return _json([st.candles.to_wire(c, interval) for c in rows])


def _ticker24(app: MarketApp, st: MarketState, market: str) -> dict:
    i = st.inst
    now = app.now_ms()
    st.candles.ensure_until(now)
    first = max(st.candles.first or 0, (now // MINUTE_MS) - 1439)
    last = st.candles.last or first
    o = h = lo = cl = 0
    vol = n = 0
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
        n += c[7]
    b = st.bbo()
    last_trade = st.trades[-1] if st.trades else None
    change = cl - o
    body = {
        "symbol": i.wire, "priceChange": i.format_price(change) if change >= 0 else "-" + i.format_price(-change),
        "priceChangePercent": f"{(change / o * 100) if o else 0:.3f}",
        "weightedAvgPrice": f"{(qv / i.qty(vol)) if vol else 0:.8f}",
        "lastPrice": i.format_price(cl), "lastQty": i.format_qty(last_trade.qty_units if last_trade else 0),
        "openPrice": i.format_price(o), "highPrice": i.format_price(h), "lowPrice": i.format_price(lo),
        "volume": i.format_qty(vol), "quoteVolume": f"{qv:.8f}",
        "openTime": first * MINUTE_MS, "closeTime": now,
        "firstId": st.trades[0].trade_id if st.trades else -1, "lastId": last_trade.trade_id if last_trade else -1,
        "count": n,
    }
    if market == "spot":
        body.update({"prevClosePrice": i.format_price(o), "bidPrice": i.format_price(b[0]),
                     "bidQty": i.format_qty(b[1]), "askPrice": i.format_price(b[2]), "askQty": i.format_qty(b[3])})
    return body


async def ticker_24hr(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    market = _market(request)
    states = _states(request)
    rows = [_ticker24(app, s, market) for s in states]
    return _json(rows[0] if "symbol" in request.query else rows)


async def book_ticker(request: web.Request) -> web.Response:
    market = _market(request)
    rows = []
    for st in _states(request):
        i = st.inst
        b = st.bbo()
        row: dict = {"symbol": i.wire, "bidPrice": i.format_price(b[0]), "bidQty": i.format_qty(b[1]),
                     "askPrice": i.format_price(b[2]), "askQty": i.format_qty(b[3])}
        if market == "linear":
            row["time"] = st.last_ts_ms
            row["lastUpdateId"] = st.last_update_id
        rows.append(row)
    return _json(rows[0] if "symbol" in request.query else rows)


async def ticker_price(request: web.Request) -> web.Response:
    market = _market(request)
    rows = []
    for st in _states(request):
        row: dict = {"symbol": st.inst.wire, "price": st.inst.format_price(st.last_price())}
        if market == "linear":
            row["time"] = st.last_ts_ms
        rows.append(row)
    return _json(rows[0] if "symbol" in request.query else rows)


async def avg_price(request: web.Request) -> web.Response:
    st = _state(request)
    assert st is not None
    return _json({"mins": 5, "price": st.inst.format_price(st.last_price()), "closeTime": st.last_ts_ms})


async def trades(request: web.Request) -> web.Response:
    st = _state(request)
    assert st is not None
    limit = max(1, min(_int(request, "limit", 500) or 500, 1000))
    from_id = _int(request, "fromId")
    rows = list(st.trades)
    if from_id is not None:
        rows = [t for t in rows if t.trade_id >= from_id][:limit]
    else:
        rows = rows[-limit:]
    i = st.inst
    spot = _market(request) == "spot"
    out = []
    for t in rows:
        row = {"id": t.trade_id, "price": i.format_price(t.price_units), "qty": i.format_qty(t.qty_units),
               "quoteQty": f"{i.price(t.price_units) * i.qty(t.qty_units):.8f}", "time": t.ts_ms,
               "isBuyerMaker": t.buyer_is_maker}
        if spot:
            row["isBestMatch"] = True
        out.append(row)
    return _json(out)


async def agg_trades(request: web.Request) -> web.Response:
    st = _state(request)
    assert st is not None
    limit = max(1, min(_int(request, "limit", 500) or 500, 1000))
    from_id, start, end = _int(request, "fromId"), _int(request, "startTime"), _int(request, "endTime")
    rows = list(st.agg_trades)
    if from_id is not None:
        rows = [a for a in rows if a.agg_id >= from_id][:limit]
    elif start is not None or end is not None:
        rows = [a for a in rows if (start is None or a.ts_ms >= start) and (end is None or a.ts_ms <= end)][:limit]
    else:
        rows = rows[-limit:]
    i = st.inst
    spot = _market(request) == "spot"
    out = []
    for a in rows:
        row = {"a": a.agg_id, "p": i.format_price(a.price_units), "q": i.format_qty(a.qty_units),
               "f": a.first_trade_id, "l": a.last_trade_id, "T": a.ts_ms, "m": a.buyer_is_maker}
        if spot:
            row["M"] = True
        out.append(row)
    return _json(out)


async def premium_index(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    now = app.now_ms()
    next_funding = (now // 28_800_000 + 1) * 28_800_000
    rows = []
    for st in _states(request):
        p = st.inst.format_price(st.last_price())
        rows.append({"symbol": st.inst.wire, "markPrice": p, "indexPrice": p, "estimatedSettlePrice": p,
                     "lastFundingRate": "0.00010000", "interestRate": "0.00010000",
                     "nextFundingTime": next_funding, "time": now})
    return _json(rows[0] if "symbol" in request.query else rows)


async def funding_rate(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    now = app.now_ms()
    limit = max(1, min(_int(request, "limit", 100) or 100, 1000))
    start = _int(request, "startTime")
    end = _int(request, "endTime") or now
    states = _states(request)
    period = 28_800_000
    first = (start // period + (1 if start % period else 0)) if start is not None else end // period - limit + 1
    rows = []
    for st in states:
        p = st.inst.format_price(st.last_price())
        for k in range(first, end // period + 1):
            rows.append({"symbol": st.inst.wire, "fundingTime": k * period, "fundingRate": "0.00010000",
                         "markPrice": p})
    return _json(rows[:limit])


async def open_interest(request: web.Request) -> web.Response:
    st = _state(request)
    assert st is not None
    return _json({"openInterest": "10000.000", "symbol": st.inst.wire, "time": st.last_ts_ms})


def routes() -> list[web.RouteDef]:
    """Every REST route (spot and USD-M futures)."""
    spot = {
        "ping": ping, "time": server_time, "exchangeInfo": exchange_info, "depth": depth, "klines": klines,
        "uiKlines": klines, "ticker/24hr": ticker_24hr, "ticker/bookTicker": book_ticker,
        "ticker/price": ticker_price, "avgPrice": avg_price, "trades": trades, "historicalTrades": trades,
        "aggTrades": agg_trades,
    }
    fapi = {
        "ping": ping, "time": server_time, "exchangeInfo": exchange_info, "depth": depth, "klines": klines,
        "continuousKlines": klines, "markPriceKlines": klines, "indexPriceKlines": klines,
        "premiumIndexKlines": klines, "ticker/24hr": ticker_24hr, "ticker/bookTicker": book_ticker,
        "ticker/price": ticker_price, "trades": trades, "historicalTrades": trades, "aggTrades": agg_trades,
        "premiumIndex": premium_index, "fundingRate": funding_rate, "openInterest": open_interest,
    }
    out = [web.get(f"/api/v3/{name}", h) for name, h in spot.items()]
    out += [web.get(f"/fapi/v1/{name}", h) for name, h in fapi.items()]
    out += [web.get("/fapi/v2/ticker/price", ticker_price), web.get("/fapi/v2/exchangeInfo", exchange_info)]
    return out


@web.middleware
async def binance_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Binance error bodies and the REST faults (429, 5xx)."""
    if not is_upgrade(request):
        fault = request.app[DIALECT_KEY].rest_fault(request)
        if fault == "rest429":
            return _json({"code": -1003, "msg": "Too many requests; current limit of IP is 6000 requests per minute."},
                         status=429, headers={"Retry-After": "1"})
        if fault == "rest5xx":
            return _json({"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
                         status=503)
    try:
        return await handler(request)
    except BinanceError as exc:
        return _json({"code": exc.code, "msg": exc.msg}, status=exc.status)
    except web.HTTPNotFound:
        return _json({"code": -1000, "msg": f"no such endpoint on the local exchange: {request.path}"}, status=404)
