"""OKX (API v5) on the local exchange: spot (``BTC-USDT``) and USDT-margined perpetual swaps
(``BTC-USDT-SWAP``), REST under ``/api/v5`` and websockets at ``/ws/v5/public`` and ``/ws/v5/business``, in the
shapes ccxt's ``okx.py`` and ``pro/okx.py`` read (ccxt 4.5.90).

REST (every body ``{"code": "0", "msg": "", "data": [...]}``; errors ``{"code": "5xxxx", "msg": ..., "data": []}``):
``public/time``, ``public/instruments?instType=SPOT|SWAP``, ``system/status``, ``market/books`` (``sz`` <= 400)
and ``market/books-full`` (<= 5000), ``market/candles`` and ``market/history-candles`` (``bar``, ``after``/
``before`` exclusive ms bounds, newest first, ``limit`` <= 300), ``market/mark-price-candles``,
``market/index-candles`` (and their ``history-`` forms), ``market/tickers?instType``, ``market/ticker``,
``market/trades`` (<= 500, newest first), ``market/history-trades`` (``type`` 1 by ``tradeId``, 2 by ``ts``),
and for swaps ``public/funding-rate`` (``instId=ANY`` for all), ``public/funding-rate-history``,
``public/mark-price``, ``public/open-interest``, ``public/position-tiers``. Errors: 50014 (a parameter
missing), 51000 (a parameter wrong), 51001 (no such instrument), HTTP 404 for an unknown path.

Swaps: OKX sizes swaps in contracts of ``ctVal`` base each. The dialect lists ``ctVal`` = the instrument's
lot step (``Instrument.step``, e.g. 0.001 BTC), ``ctMult`` 1, ``lotSz``/``minSz`` 1, so every size on the wire
(books, trades, candles' ``vol``, tickers' ``vol24h``) is a whole number of contracts = qty_units / step_units,
and ``contracts * ctVal`` is the market's base quantity exactly. ccxt keeps swap books and trades in contracts
(``contractSize`` = ctVal); so does every consumer of ccxt's swap books.

Websocket ``/ws/v5/public``: ``{"op": "subscribe", "args": [{"channel": ..., "instId": ...}, ...]}`` is acked
per argument with ``{"event": "subscribe", "arg": {...}, "connId": ...}`` (``unsubscribe`` likewise);
an unknown channel or instrument gets ``{"event": "error", "code": "60018", ...}``, a frame that is no request
``60012``; text ``"ping"`` is answered ``"pong"``. Channels:

- ``books``: on subscribe a ``snapshot`` of the best 400 levels a side, then an ``update`` per 100 ms step with
  the changes of that 400-level view (levels entering the view as the book moves are sent, levels leaving it
  are sent with size ``"0"``, as OKX does); levels ``[px, sz, "0", numOrders]`` (order counts are not
  modelled: "1", "0" for a removed level). ``seqId`` = the market's ``last_update_id`` after the step (so
  ``update_id`` and ``/helios/state`` need no dialect counter), ``prevSeqId`` = the ``seqId`` of the message
  before (-1 on a snapshot), ``checksum`` = OKX's CRC32 (signed) of the best 25 bids and asks interleaved
  ``bidPx:bidSz:askPx:askSz:...`` over the strings as sent. A step whose changes all lie outside the view
  sends an update with empty sides (ids advance, the view is unchanged). Prices and sizes are OKX's strings:
  the shortest decimal (``"60000.1"``, ``"0.5"``, ``"12"``), not padded.
- ``books5``: the best 5 levels as a full snapshot each step the book changed (``seqId`` as ``books``).
- ``bbo-tbt``: the best bid and ask whenever they change (what ccxt's ``watch_bids_asks`` uses).
- ``trades``: one push per fill (``count`` "1": fills are not aggregated per taker order), ``tradeId`` the
  market's trade id (1, 2, ... per instrument), ``side`` the taker's side.
- ``tickers``: the 24 h ticker whenever the best bid/ask or the last trade changed.

``/ws/v5/business``: ``candle<bar>`` (``candle1m`` ... ``candle1D``, ``candle6Hutc`` ...): the open candle at
least once a second and on every trade, the closed one once as the next opens (``confirm`` "1").

How each fault shows here (``--faults``):

- ``drop``, ``reorder``: an update's ``prevSeqId`` no longer names the ``seqId`` the client holds: ccxt raises
  ``InvalidNonce``, drops the book, and on the next watch unsubscribes and subscribes again (a new snapshot).
- ``dup``: the repeated update's ``prevSeqId`` is the one before: ``InvalidNonce`` and a resubscribe (OKX has
  no "stale message" rule a client could apply, unlike Binance's ``u <= lastUpdateId``).
- ``gap``: the market's ids jump by 1..5. On OKX a ``seqId`` jump alone is legal (``prevSeqId`` always names the
  previous message, however far ids moved), so a jump would be invisible; the fault is rendered as what a
  lost message looks like on OKX: the update's ``prevSeqId`` is the market's id before the change, one the
  client never received (ccxt raises ``InvalidNonce``).
- ``checksum``: an update is sent with a wrong ``checksum`` (the levels are right). ccxt does not verify
  checksums; Helios's ``live/okx_book_check`` does and declares a gap.
- ``crossed``: the crossed bid is an ordinary level change; clients show the crossed book for 1 s.
- ``malformed``: a truncated JSON frame before an update (ccxt's frame handler raises on it).
- ``disconnect``: every websocket closed (1001); ``noping``: text ``"ping"`` gets no ``"pong"`` (and the
  server's protocol pings stop), ccxt's keepalive times the connection out.
- ``rest429``: HTTP 429 ``{"code": "50011", "msg": "Too Many Requests"}``; ``rest5xx``: HTTP 503 code 50013
  ("System is busy"), on every ``/api/v5`` request (ccxt: ``RateLimitExceeded``, ``ExchangeNotAvailable``).
- Listed as unsupported (``unsupported_faults``): ``stale`` (it does serve ``market/books`` from an old
  snapshot, but a client's book starts from the websocket snapshot, never from REST) and ``rest429``/
  ``rest5xx`` (they fire on REST as above, e.g. loading markets or candles, but a book client never calls REST
  after loading markets, so they cannot reach a book).

Not done: private channels and endpoints (``/ws/v5/private``, login: answered with error 60009), ``trades-all``,
``books-l2-tbt``/``books50-l2-tbt`` (VIP, login), ``mark-price``/``funding-rate`` websocket channels, futures and
options, order counts, and HK-time alignment of 6H/12H/1D candles (all candles are UTC-aligned, as the
``...utc`` bars ccxt requests for REST).
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from helios_orderflow.emulator.app import MarketApp, dumps
from helios_orderflow.emulator.dialects.base import Dialect, Middleware
from helios_orderflow.emulator.hub import HUB_KEY, Connection, Hub, is_upgrade, serve
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import MINUTE_MS
from helios_orderflow.emulator.market import Batch, Diff, MarketState
from helios_orderflow.importers.checksums import okx_checksum

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

#: Levels per side of the ``books`` channel (its snapshot and the view its updates keep)
BOOKS_DEPTH = 400
#: Levels per side the checksum covers
CHECKSUM_DEPTH = 25
FUNDING_PERIOD_MS = 8 * 3_600_000
FUNDING_RATE = "0.0001"
#: OKX bar names -> minutes (candles are UTC-aligned whichever the name)
BARS: dict[str, int] = {
    "1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1H": 60, "2H": 120, "4H": 240, "6H": 360, "12H": 720,
    "1D": 1440, "6Hutc": 360, "12Hutc": 720, "1Dutc": 1440,
}
PUBLIC_CHANNELS = ("books", "books5", "bbo-tbt", "trades", "tickers")
#: Every candle channel of the business endpoint
CANDLE_CHANNELS = {f"candle{bar}": bar for bar in BARS}

Levels = list[tuple[int, int]]


class OkxError(Exception):
    """An OKX error answer: HTTP ``status`` with body ``{"code": code, "msg": msg, "data": []}``."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def trim(text: str) -> str:
    """OKX's decimal strings carry no trailing zeros: ``"60000.10000000" -> "60000.1"``, ``"5.000" -> "5"``."""
    if "." not in text:
        return text
    return text.rstrip("0").rstrip(".")


def contracts(inst: Instrument, qty_units: int) -> str:
    """A swap size in contracts of ``ctVal`` = one lot step (a whole number for sizes on the lot grid)."""
    whole, rest = divmod(qty_units, inst.step_units)
    if not rest:
        return str(whole)
    return format((Decimal(qty_units) / Decimal(inst.step_units)).normalize(), "f")


def _json(data: list[Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps({"code": "0", "msg": "", "data": data}), status=status,
                        content_type="application/json", headers=headers)


def _error(status: int, code: str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=dumps({"code": code, "msg": msg, "data": []}), status=status,
                        content_type="application/json", headers=headers)


def _int(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise OkxError(400, "51000", f"Parameter {name} error") from None


def _in_view(price: int, edge: int | None, is_bid: bool) -> bool:
    """Whether ``price`` lies within a side's 400-level view whose worst price is ``edge`` (None: the whole
    side is in view)."""
    return edge is None or (price >= edge if is_bid else price <= edge)


def _view_edge(book: dict[int, int], is_bid: bool) -> int | None:
    """The worst price of the best ``BOOKS_DEPTH`` levels, or None when the side has no more than that."""
    if len(book) <= BOOKS_DEPTH:
        return None
    return heapq.nlargest(BOOKS_DEPTH, book)[-1] if is_bid else heapq.nsmallest(BOOKS_DEPTH, book)[-1]


def view_changes(book: dict[int, int], changed: Levels, old_edge: int | None,
                 is_bid: bool) -> tuple[Levels, int | None]:
    """The level changes of one side's 400-level view after the book changed by ``changed`` (absolute sizes,
    0 removed; ``book`` already holds them): changes inside the view, levels entering it (their size) and
    levels leaving it (size 0). Best first; with the view's new edge."""
    new_edge = _view_edge(book, is_bid)
    out: dict[int, int] = {}
    for p, q in changed:
        if q and _in_view(p, new_edge, is_bid):
            out[p] = q
        elif _in_view(p, old_edge, is_bid):
            out[p] = 0  # removed, or pushed out of the view by this step's changes
    if new_edge != old_edge:
        seen = {p for p, _ in changed}
        for p, q in book.items():
            if p in seen:
                continue
            was, now = _in_view(p, old_edge, is_bid), _in_view(p, new_edge, is_bid)
            if now and not was:
                out[p] = q
            elif was and not now:
                out[p] = 0
    return sorted(out.items(), reverse=is_bid), new_edge


class Okx(Dialect):
    name = "okx"
    markets = ("spot", "linear")
    unsupported_faults = ("stale", "rest429", "rest5xx")

    def __init__(self, app: MarketApp, hub: Hub) -> None:
        super().__init__(app, hub)
        #: symbol -> (bid edge, ask edge) of the ``books`` view clients hold (kept while anyone subscribes)
        self._edges: dict[str, tuple[int | None, int | None]] = {}
        self._kline_sent: dict[tuple[str, str], tuple[int, int]] = {}
        #: symbol -> (minute, (open, high, low, volume units, quote volume)) of the closed minutes of 24 h
        self._day_cache: dict[str, tuple[int, tuple[int, int, int, int, float]]] = {}
        self._conn_ids = itertools.count(1)
        #: symbol -> connections whose ``books`` snapshot waits for the next step (see ``on_text``)
        self._waiting: dict[str, set[Connection]] = {}

    # ---- naming and client configuration ----------------------------------------------------------------
    @staticmethod
    def wire(inst: Instrument) -> str:
        return f"{inst.base}-{inst.quote}-SWAP" if inst.market == "linear" else f"{inst.base}-{inst.quote}"

    @classmethod
    def ccxt_urls(cls, base: str) -> dict[str, Any]:
        # ccxt builds REST URLs as rest + "/api/v5/<path>" and websocket URLs as ws + "/public" | "/business"
        return {"api": {"rest": base, "ws": base.replace("http://", "ws://", 1) + "/ws/v5"}}

    @classmethod
    def ccxt_options(cls, market: str) -> dict[str, Any]:
        kind = "spot" if market == "spot" else "swap"
        return {"fetchMarkets": {"types": [kind]}, "defaultType": kind}

    @classmethod
    def endpoints(cls, base: str) -> str:
        wsb = base.replace("http://", "ws://", 1)
        return f"REST {base}/api/v5; websockets {wsb}/ws/v5/public and {wsb}/ws/v5/business"

    # ---- formatting ---------------------------------------------------------------------------------------
    @staticmethod
    def px(inst: Instrument, price_units: int) -> str:
        return trim(inst.format_price(price_units))

    @staticmethod
    def sz(inst: Instrument, qty_units: int) -> str:
        """A size as OKX sends it: base quantity on spot, contracts on swaps."""
        return contracts(inst, qty_units) if inst.market == "linear" else trim(inst.format_qty(qty_units))

    def _levels(self, inst: Instrument, levels: Levels) -> str:
        px, sz = self.px, self.sz
        return ",".join(f'["{px(inst, p)}","{sz(inst, q)}","0","{1 if q else 0}"]' for p, q in levels)

    def checksum(self, st: MarketState) -> int:
        """OKX's checksum of ``st``'s current book (the best 25 levels a side as sent)."""
        inst, px, sz = st.inst, self.px, self.sz
        bids = [(px(inst, p), sz(inst, q)) for p, q in heapq.nlargest(CHECKSUM_DEPTH, st.bids.items())]
        asks = [(px(inst, p), sz(inst, q)) for p, q in heapq.nsmallest(CHECKSUM_DEPTH, st.asks.items())]
        return okx_checksum(bids, asks)

    # ---- serving ------------------------------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        rest: dict[str, Callable[[web.Request], Any]] = {
            "public/time": self.server_time, "public/instruments": self.instruments, "system/status": self.status,
            "market/books": self.books, "market/books-full": self.books_full, "market/candles": self.candles,
            "market/history-candles": self.history_candles, "market/mark-price-candles": self.price_candles,
            "market/history-mark-price-candles": self.price_candles, "market/index-candles": self.price_candles,
            "market/history-index-candles": self.price_candles, "market/tickers": self.tickers,
            "market/ticker": self.ticker, "market/trades": self.trades, "market/history-trades": self.history_trades,
            "public/funding-rate": self.funding_rate, "public/funding-rate-history": self.funding_rate_history,
            "public/mark-price": self.mark_price, "public/open-interest": self.open_interest,
            "public/position-tiers": self.position_tiers,
        }
        out = [web.get(f"/api/v5/{path}", handler) for path, handler in rest.items()]
        out += [web.get(f"/ws/v5/{kind}", self.handle_ws) for kind in ("public", "business", "private")]
        return out

    def middlewares(self) -> list[Middleware]:
        @web.middleware
        async def okx_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
            """OKX error bodies and the REST faults (429, 5xx)."""
            if not is_upgrade(request):
                fault = self.rest_fault(request)
                if fault == "rest429":
                    return _error(429, "50011", "Too Many Requests", headers={"Retry-After": "1"})
                if fault == "rest5xx":
                    return _error(503, "50013", "System is busy, please try again later.")
            try:
                return await handler(request)
            except OkxError as exc:
                return _error(exc.status, exc.code, exc.msg)
            except web.HTTPNotFound:
                return _error(404, "404", f"Not Found: no such endpoint on the local exchange: {request.path}")

        return [okx_errors]

    # ---- REST -----------------------------------------------------------------------------------------------
    def _state(self, request: web.Request, name: str = "instId") -> MarketState:
        inst_id = request.query.get(name)
        if not inst_id:
            raise OkxError(400, "50014", f"Parameter {name} can not be empty.")
        st = self._by_inst_id(inst_id)
        if st is None:
            raise OkxError(400, "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")
        return st

    def _by_inst_id(self, inst_id: str) -> MarketState | None:
        return self.app.state_by_wire("linear" if inst_id.endswith("-SWAP") else "spot", inst_id)

    def _inst_type(self, request: web.Request, required: bool = True) -> str | None:
        """The market of ``instType`` (SPOT -> spot, SWAP -> linear)."""
        raw = request.query.get("instType")
        if not raw:
            if required:
                raise OkxError(400, "50014", "Parameter instType can not be empty.")
            return None
        market = {"SPOT": "spot", "SWAP": "linear", "MARGIN": "spot"}.get(raw.upper())
        if market is None:
            if raw.upper() in ("FUTURES", "OPTION"):
                return "none"  # a real instType the local exchange lists nothing of
            raise OkxError(400, "51000", "Parameter instType error")
        return market

    async def server_time(self, request: web.Request) -> web.Response:
        return _json([{"ts": str(self.app.now_ms())}])

    async def status(self, request: web.Request) -> web.Response:
        return _json([])  # no maintenance

    def _instrument(self, st: MarketState) -> dict[str, Any]:
        i = st.inst
        common = {
            "alias": "", "auctionEndTime": "", "category": "1", "expTime": "", "instIdCode": self._inst_code(st),
            "listTime": "1606468572000", "contTdSwTime": "1606468572000", "maxIcebergSz": "9999999999",
            "maxLmtAmt": "20000000", "maxMktAmt": "1000000", "maxStopSz": "", "maxTriggerSz": "9999999999",
            "maxTwapSz": "9999999999", "openType": "pre_quote", "optType": "", "ruleType": "normal", "state": "live",
            "stk": "", "tickSz": trim(i.tick), "tradeQuoteCcyList": [i.quote] if i.market == "spot" else [],
        }
        if i.market == "spot":
            return {**common, "instType": "SPOT", "instId": self.wire(i), "instFamily": "", "uly": "",
                    "baseCcy": i.base, "quoteCcy": i.quote, "settleCcy": "", "ctMult": "", "ctType": "",
                    "ctVal": "", "ctValCcy": "", "lever": "10", "lotSz": trim(i.step), "minSz": trim(i.step),
                    "maxLmtSz": "9999999999", "maxMktSz": "1000000"}
        family = f"{i.base}-{i.quote}"
        return {**common, "instType": "SWAP", "instId": self.wire(i), "instFamily": family, "uly": family,
                "baseCcy": "", "quoteCcy": "", "settleCcy": i.quote, "ctMult": "1", "ctType": "linear",
                "ctVal": trim(i.step), "ctValCcy": i.base, "lever": "100", "lotSz": "1", "minSz": "1",
                "maxLmtSz": "100000000", "maxMktSz": "1000000"}

    def _inst_code(self, st: MarketState) -> int:
        return 10_000 + self.app.source.states.index(st)

    async def instruments(self, request: web.Request) -> web.Response:
        market = self._inst_type(request)
        inst_id = request.query.get("instId")
        states = [s for s in self.app.states_of(market or "") if not inst_id or self.wire(s.inst) == inst_id]
        return _json([self._instrument(s) for s in states])

    def _book(self, request: web.Request, max_sz: int) -> web.Response:
        st = self._state(request)
        sz = _int(request, "sz", 1) or 1
        if not 1 <= sz <= max_sz:
            raise OkxError(400, "51000", "Parameter sz error")
        _, bids, asks = self.app.depth_snapshot(st, sz)  # the ``stale`` fault applies here
        inst = st.inst
        body = {"asks": [[self.px(inst, p), self.sz(inst, q), "0", "1"] for p, q in asks],
                "bids": [[self.px(inst, p), self.sz(inst, q), "0", "1"] for p, q in bids],
                "ts": str(st.last_ts_ms or self.app.now_ms())}
        return _json([body])

    async def books(self, request: web.Request) -> web.Response:
        return self._book(request, BOOKS_DEPTH)

    async def books_full(self, request: web.Request) -> web.Response:
        return self._book(request, 5000)

    def _candle_rows(self, request: web.Request, st: MarketState) -> list[tuple[list[Any], bool]]:
        """The candles a candles request selects, newest first, each with whether it is closed."""
        bar = request.query.get("bar") or "1m"
        minutes = BARS.get(bar)
        if minutes is None:
            raise OkxError(400, "51000", "Parameter bar error")
        limit = max(1, min(_int(request, "limit", 100) or 100, 300))
        after, before = _int(request, "after"), _int(request, "before")
        now = self.app.now_ms()
        book = st.candles
        book.ensure_until(now)
        if book.first is None or book.last is None:
            return []
        span = minutes * MINUTE_MS
        hi, lo = book.last // minutes, book.first // minutes
        if after is not None:  # records earlier than ``after`` (exclusive)
            hi = min(hi, (after - 1) // span)
        if before is not None:  # records newer than ``before`` (exclusive)
            lo = max(lo, before // span + 1)
        rows = []
        for bucket in range(hi, max(lo, hi - limit + 1) - 1, -1):
            c = book.candle(minutes, bucket)
            if c is not None:
                rows.append((c, (bucket + 1) * span <= now))
        return rows

    def _candle_wire(self, inst: Instrument, c: list[Any], closed: bool) -> list[str]:
        """``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]``: ``vol`` in base (spot) or contracts (swap),
        ``volCcy`` in quote (spot) or base (swap)."""
        px = self.px
        quote = trim(f"{c[6]:.8f}")
        if inst.market == "linear":
            vol, vol_ccy = contracts(inst, c[5]), trim(inst.format_qty(c[5]))
        else:
            vol, vol_ccy = trim(inst.format_qty(c[5])), quote
        return [str(c[0]), px(inst, c[1]), px(inst, c[2]), px(inst, c[3]), px(inst, c[4]), vol, vol_ccy, quote,
                "1" if closed else "0"]

    async def candles(self, request: web.Request) -> web.Response:
        st = self._state(request)
        return _json([self._candle_wire(st.inst, c, closed) for c, closed in self._candle_rows(request, st)])

    async def history_candles(self, request: web.Request) -> web.Response:
        return await self.candles(request)

    async def price_candles(self, request: web.Request) -> web.Response:
        """Mark-price and index candles ``[ts, o, h, l, c, confirm]`` (both the traded prices here); index
        candles name the swap's ``instFamily`` (``BTC-USDT``)."""
        inst_id = request.query.get("instId") or ""
        st = self._by_inst_id(inst_id + "-SWAP") if "index" in request.path else None
        if st is None:
            st = self._state(request)
        px, inst = self.px, st.inst
        return _json([[str(c[0]), px(inst, c[1]), px(inst, c[2]), px(inst, c[3]), px(inst, c[4]),
                       "1" if closed else "0"] for c, closed in self._candle_rows(request, st)])

    def _day(self, st: MarketState, now_ms: int) -> tuple[int, int, int, int, int, float]:
        """(open, high, low, last, volume units, quote volume) over the 24 h up to ``now_ms``; the closed minutes
        are summed once a minute."""
        book = st.candles
        book.ensure_until(now_ms)
        minute = now_ms // MINUTE_MS
        cached = self._day_cache.get(st.inst.symbol)
        if cached is None or cached[0] != minute:
            o = h = lo = vol = 0
            qv = 0.0
            for m in range(minute - 1439, minute):
                c = book.minutes.get(m)
                if c is None:
                    continue
                if not o:
                    o, h, lo = c[1], c[2], c[3]
                h, lo = max(h, c[2]), min(lo, c[3])
                vol += c[5]
                qv += c[6]
            cached = (minute, (o, h, lo, vol, qv))
            self._day_cache[st.inst.symbol] = cached
        o, h, lo, vol, qv = cached[1]
        cur = book.minutes.get(minute)
        last = st.last_price()
        if cur is not None:
            if not o:
                o, h, lo = cur[1], cur[2], cur[3]
            h, lo = max(h, cur[2]), min(lo, cur[3])
            vol += cur[5]
            qv += cur[6]
            last = cur[4]
        return o or last, h or last, lo or last, last, vol, qv

    def _ticker(self, st: MarketState, now_ms: int) -> dict[str, str]:
        inst = st.inst
        px, sz = self.px, self.sz
        o, h, lo, last, vol, qv = self._day(st, now_ms)
        b = st.bbo()
        last_sz = st.trades[-1].qty_units if st.trades else 0
        day = (now_ms // 86_400_000) * 86_400_000
        sod0 = st.candles.minutes.get(day // MINUTE_MS)
        sod8_ms = ((now_ms + 8 * 3_600_000) // 86_400_000) * 86_400_000 - 8 * 3_600_000
        sod8 = st.candles.minutes.get(sod8_ms // MINUTE_MS)
        swap = inst.market == "linear"
        return {
            "instType": "SWAP" if swap else "SPOT", "instId": self.wire(inst), "last": px(inst, last),
            "lastSz": sz(inst, last_sz), "askPx": px(inst, b[2]), "askSz": sz(inst, b[3]), "bidPx": px(inst, b[0]),
            "bidSz": sz(inst, b[1]), "open24h": px(inst, o), "high24h": px(inst, h), "low24h": px(inst, lo),
            # volCcy24h: quote volume on spot, base volume on swaps; vol24h: base on spot, contracts on swaps
            "volCcy24h": trim(inst.format_qty(vol)) if swap else trim(f"{qv:.8f}"),
            "vol24h": contracts(inst, vol) if swap else trim(inst.format_qty(vol)),
            "ts": str(now_ms), "sodUtc0": px(inst, sod0[1] if sod0 else o), "sodUtc8": px(inst, sod8[1] if sod8 else o),
        }

    async def tickers(self, request: web.Request) -> web.Response:
        market = self._inst_type(request)
        now = self.app.now_ms()
        return _json([self._ticker(s, now) for s in self.app.states_of(market or "")])

    async def ticker(self, request: web.Request) -> web.Response:
        return _json([self._ticker(self._state(request), self.app.now_ms())])

    def _trade_row(self, st: MarketState, t: Any) -> dict[str, str]:
        inst = st.inst
        return {"instId": self.wire(inst), "side": "sell" if t.buyer_is_maker else "buy",
                "sz": self.sz(inst, t.qty_units), "px": self.px(inst, t.price_units), "source": "0",
                "tradeId": str(t.trade_id), "ts": str(t.ts_ms)}

    async def trades(self, request: web.Request) -> web.Response:
        st = self._state(request)
        limit = max(1, min(_int(request, "limit", 100) or 100, 500))
        rows = list(st.trades)[-limit:]
        return _json([self._trade_row(st, t) for t in reversed(rows)])

    async def history_trades(self, request: web.Request) -> web.Response:
        """``type`` 1: ``after``/``before`` are trade ids; 2: timestamps (both exclusive), newest first."""
        st = self._state(request)
        limit = max(1, min(_int(request, "limit", 100) or 100, 100))
        by_ts = request.query.get("type") == "2"
        after, before = _int(request, "after"), _int(request, "before")
        rows = []
        for t in reversed(st.trades):
            key = t.ts_ms if by_ts else t.trade_id
            if after is not None and key >= after:
                continue
            if before is not None and key <= before:
                break
            rows.append(self._trade_row(st, t))
            if len(rows) == limit:
                break
        return _json(rows)

    def _swaps(self, request: web.Request) -> list[MarketState]:
        inst_id = request.query.get("instId")
        if inst_id == "ANY" or (not inst_id and request.query.get("instType")):
            return self.app.states_of("linear")
        st = self._state(request)
        if st.inst.market != "linear":
            raise OkxError(400, "51000", "Parameter instId error")
        return [st]

    async def funding_rate(self, request: web.Request) -> web.Response:
        now = self.app.now_ms()
        nxt = (now // FUNDING_PERIOD_MS + 1) * FUNDING_PERIOD_MS
        return _json([{
            "formulaType": "noRate", "fundingRate": FUNDING_RATE, "fundingTime": str(nxt), "impactValue": "",
            "instId": self.wire(st.inst), "instType": "SWAP", "interestRate": "0", "maxFundingRate": "0.00375",
            "method": "current_period", "minFundingRate": "-0.00375", "nextFundingRate": "",
            "nextFundingTime": str(nxt + FUNDING_PERIOD_MS), "premium": "0", "settFundingRate": FUNDING_RATE,
            "settState": "settled", "ts": str(now),
        } for st in self._swaps(request)])

    async def funding_rate_history(self, request: web.Request) -> web.Response:
        st = self._swaps(request)[0]
        now = self.app.now_ms()
        limit = max(1, min(_int(request, "limit", 100) or 100, 400))
        after, before = _int(request, "after"), _int(request, "before")
        k = (min(now, after - 1) if after is not None else now) // FUNDING_PERIOD_MS
        rows: list[dict[str, str]] = []
        while len(rows) < limit and (before is None or k * FUNDING_PERIOD_MS > before) and k >= 0:
            rows.append({"fundingRate": FUNDING_RATE, "fundingTime": str(k * FUNDING_PERIOD_MS),
                         "instId": self.wire(st.inst), "instType": "SWAP", "method": "current_period",
                         "realizedRate": FUNDING_RATE})
            k -= 1
        return _json(rows)

    async def mark_price(self, request: web.Request) -> web.Response:
        now = str(self.app.now_ms())
        return _json([{"instId": self.wire(st.inst), "instType": "SWAP", "markPx": self.px(st.inst, st.last_price()),
                       "ts": now} for st in self._swaps(request)])

    async def open_interest(self, request: web.Request) -> web.Response:
        now = str(self.app.now_ms())
        rows = []
        for st in self._swaps(request):
            oi_units = st.inst.step_units * 1_000_000  # a fixed open interest of a million contracts
            rows.append({"instId": self.wire(st.inst), "instType": "SWAP", "oi": contracts(st.inst, oi_units),
                         "oiCcy": trim(st.inst.format_qty(oi_units)),
                         "oiUsd": trim(f"{st.inst.qty(oi_units) * st.inst.price(st.last_price()):.2f}"), "ts": now})
        return _json(rows)

    async def position_tiers(self, request: web.Request) -> web.Response:
        family = request.query.get("instFamily") or request.query.get("uly") or ""
        st = self._by_inst_id(family + "-SWAP")
        if st is None:
            raise OkxError(400, "51001", "Instrument ID, Instrument ID code, or Spread ID doesn't exist.")
        tiers = [("1", "0", "1000", "0.004", "0.01", "100"), ("2", "1000", "5000", "0.01", "0.02", "50"),
                 ("3", "5000", "20000", "0.02", "0.04", "25")]
        return _json([{"baseMaxLoan": "", "imr": imr, "instFamily": family, "instId": "", "maxLever": lever,
                       "maxSz": hi, "minSz": lo, "mmr": mmr, "optMgnFactor": "0", "quoteMaxLoan": "", "tier": tier,
                       "uly": family} for tier, lo, hi, mmr, imr, lever in tiers])

    # ---- websockets -----------------------------------------------------------------------------------------
    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        """Serve one websocket of ``/ws/v5/public``, ``/business`` or ``/private`` until it closes."""
        if not is_upgrade(request):
            raise web.HTTPNotFound()
        kind = request.path.rstrip("/").rsplit("/", 1)[-1]
        hub = request.app[HUB_KEY]
        made: list[Connection] = []

        def conn_for(ws: web.WebSocketResponse) -> Connection:
            # One OKX connection carries spot and swap channels alike: its topics are registered under each
            # instrument's market by hand (``_add``), so ``Connection.market`` only names the endpoint.
            conn = Connection(ws, kind)
            conn.data["connId"] = f"{(next(self._conn_ids) * 2654435761) & 0xFFFFFFFF:08x}"
            conn.data["keys"] = set()
            made.append(conn)
            return conn

        try:
            return await serve(request, conn_for, lambda conn, text: self.on_text(hub, conn, kind, text))
        finally:
            for conn in made:
                for market, topic in conn.data["keys"]:
                    hub.subs.get((market, topic), set()).discard(conn)

    @staticmethod
    def _add(hub: Hub, conn: Connection, market: str, topic: str) -> None:
        conn.subs.add(topic)
        conn.data["keys"].add((market, topic))
        hub.subs.setdefault((market, topic), set()).add(conn)
        counts = hub.app.log.subscriptions
        counts[topic] = counts.get(topic, 0) + 1

    @staticmethod
    def _remove(hub: Hub, conn: Connection, market: str, topic: str) -> None:
        conn.subs.discard(topic)
        conn.data["keys"].discard((market, topic))
        hub.subs.get((market, topic), set()).discard(conn)

    def on_text(self, hub: Hub, conn: Connection, kind: str, text: str) -> None:
        """Answer one text frame: ``ping``, or a request answered per argument (an ack or OKX's error)."""
        conn_id = conn.data.get("connId", "")
        if text == "ping":
            if not self.app.noping_active(conn.opened):
                conn.push("pong")
            return
        try:
            req = json.loads(text)
            op = req.get("op")
            args = req.get("args")
        except (ValueError, AttributeError):
            conn.push(dumps({"event": "error", "code": "60012", "msg": f"Illegal request: {text}", "connId": conn_id}))
            return
        if op == "login" or kind == "private":
            conn.push(dumps({"event": "error", "code": "60009", "msg": "Login failed.", "connId": conn_id}))
            return
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            conn.push(dumps({"event": "error", "code": "60012", "msg": f"Illegal request: {text}", "connId": conn_id}))
            return
        for arg in args:
            channel = arg.get("channel") if isinstance(arg, dict) else None
            inst_id = arg.get("instId") if isinstance(arg, dict) else None
            st = self._by_inst_id(inst_id) if isinstance(inst_id, str) else None
            served = CANDLE_CHANNELS if kind == "business" else PUBLIC_CHANNELS
            if st is None or channel not in served:
                conn.push(dumps({"event": "error", "code": "60018", "connId": conn_id,
                                 "msg": f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use "
                                        "the correct URL, channel and parameters referring to API document."}))
                continue
            echo = {"channel": channel, "instId": inst_id}
            topic = f"{channel}:{inst_id}"
            if op == "unsubscribe":
                self._waiting.get(st.inst.symbol, set()).discard(conn)
                self._remove(hub, conn, st.inst.market, topic)
                conn.push(dumps({"event": "unsubscribe", "arg": echo, "connId": conn_id}))
                continue
            conn.push(dumps({"event": "subscribe", "arg": echo, "connId": conn_id}))
            if channel == "books" and st._pend_ops:
                # The book holds changes that have no seqId yet (a source's first book, before the server's
                # first step): the snapshot waits for the step that numbers them, so its seqId names its book.
                self._waiting.setdefault(st.inst.symbol, set()).add(conn)
                continue
            self._add(hub, conn, st.inst.market, topic)
            if channel == "books":
                conn.push(self._snapshot(st))

    def _snapshot(self, st: MarketState) -> str:
        """The ``books`` snapshot of ``st`` now (between two steps): the best 400 levels a side."""
        inst = st.inst
        bids = heapq.nlargest(BOOKS_DEPTH, st.bids.items())
        asks = heapq.nsmallest(BOOKS_DEPTH, st.asks.items())
        self._edges[inst.symbol] = (bids[-1][0] if len(st.bids) > BOOKS_DEPTH else None,
                                    asks[-1][0] if len(st.asks) > BOOKS_DEPTH else None)
        wire = self.wire(inst)
        return (f'{{"arg":{{"channel":"books","instId":"{wire}"}},"action":"snapshot","data":[{{'
                f'"asks":[{self._levels(inst, asks)}],"bids":[{self._levels(inst, bids)}],'
                f'"ts":"{st.last_ts_ms or self.app.now_ms()}","checksum":{self.checksum(st)},"prevSeqId":-1,'
                f'"seqId":{st.last_update_id}}}]}}')

    # ---- one step's messages ----------------------------------------------------------------------------------
    def publish(self, st: MarketState, batch: Batch, ts_ms: int, elapsed: float) -> None:
        inst = st.inst
        hub, market, wire = self.hub, inst.market, self.wire(inst)
        if batch.diff is not None:
            topic = f"books:{wire}"
            if hub.subscribers(market, topic):
                self.send_diff(st, topic, self._update(st, batch.diff, ts_ms, elapsed), elapsed)
            else:
                self._edges.pop(inst.symbol, None)  # nobody holds a view; the next snapshot sets it afresh
            if hub.subscribers(market, f"books5:{wire}"):
                hub.publish(market, f"books5:{wire}", (
                    f'{{"arg":{{"channel":"books5","instId":"{wire}"}},"data":[{{'
                    f'"asks":[{self._levels(inst, heapq.nsmallest(5, st.asks.items()))}],'
                    f'"bids":[{self._levels(inst, heapq.nlargest(5, st.bids.items()))}],"instId":"{wire}",'
                    f'"ts":"{ts_ms}","seqId":{st.last_update_id}}}]}}'))
        for conn in self._waiting.pop(inst.symbol, ()):
            if not conn.closed:  # after this step's update, which its snapshot already holds
                self._add(hub, conn, market, f"books:{wire}")
                conn.push(self._snapshot(st))
        if batch.trades and hub.subscribers(market, f"trades:{wire}"):
            for t in batch.trades:
                side = "sell" if t.buyer_is_maker else "buy"
                hub.publish(market, f"trades:{wire}", (
                    f'{{"arg":{{"channel":"trades","instId":"{wire}"}},"data":[{{"instId":"{wire}",'
                    f'"tradeId":"{t.trade_id}","px":"{self.px(inst, t.price_units)}",'
                    f'"sz":"{self.sz(inst, t.qty_units)}","side":"{side}","ts":"{t.ts_ms}","count":"1",'
                    f'"source":"0"}}]}}'))
        if batch.bbo_changed and hub.subscribers(market, f"bbo-tbt:{wire}"):
            b = st.bbo()
            hub.publish(market, f"bbo-tbt:{wire}", (
                f'{{"arg":{{"channel":"bbo-tbt","instId":"{wire}"}},"data":[{{'
                f'"asks":[{self._levels(inst, [(b[2], b[3])])}],"bids":[{self._levels(inst, [(b[0], b[1])])}],'
                f'"ts":"{ts_ms}","seqId":{st.last_update_id}}}]}}'))
        if (batch.bbo_changed or batch.trades) and hub.subscribers(market, f"tickers:{wire}"):
            hub.publish(market, f"tickers:{wire}", dumps({"arg": {"channel": "tickers", "instId": wire},
                                                           "data": [self._ticker(st, ts_ms)]}))
        if ts_ms % 1000 == 0 or batch.trades:
            self._publish_candles(st, ts_ms, bool(batch.trades))

    def _update(self, st: MarketState, d: Diff, ts_ms: int, elapsed: float) -> str:
        """The ``books`` update of one step: the view's changes, the ids and the checksum (made wrong by the
        ``checksum`` fault)."""
        inst = st.inst
        bid_edge, ask_edge = self._edges.get(inst.symbol, (None, None))
        bids, bid_edge = view_changes(st.bids, d.bids, bid_edge, True)
        asks, ask_edge = view_changes(st.asks, d.asks, ask_edge, False)
        self._edges[inst.symbol] = (bid_edge, ask_edge)
        checksum = self.checksum(st)
        faults = self.app.faults
        if faults and faults.fires("checksum", inst.symbol, elapsed):
            checksum = checksum + 1 if checksum < (1 << 31) - 1 else checksum - 1
        # prevSeqId is the market's id before this step's changes: the previous message's seqId, except after
        # the ``gap`` fault moved ids on (see the module docstring)
        return (f'{{"arg":{{"channel":"books","instId":"{self.wire(inst)}"}},"action":"update","data":[{{'
                f'"asks":[{self._levels(inst, asks)}],"bids":[{self._levels(inst, bids)}],"ts":"{ts_ms}",'
                f'"checksum":{checksum},"prevSeqId":{d.prev_id},"seqId":{d.last_id}}}]}}')

    def _publish_candles(self, st: MarketState, ts_ms: int, traded: bool) -> None:
        inst = st.inst
        wire = self.wire(inst)
        for bar, minutes in BARS.items():
            topic = f"candle{bar}:{wire}"
            if not self.hub.subscribers(inst.market, topic):
                continue
            st.candles.ensure_until(ts_ms)
            bucket = (ts_ms // MINUTE_MS) // minutes
            key = (inst.symbol, bar)
            last = self._kline_sent.get(key)
            if last is not None and last[0] != bucket:
                closed = st.candles.candle(minutes, last[0])
                if closed is not None:
                    self._send_candle(st, topic, bar, closed, True)
            if last is None or last[0] != bucket or traded or ts_ms - last[1] >= 1000:
                cur = st.candles.candle(minutes, bucket)
                if cur is not None:
                    self._send_candle(st, topic, bar, cur, False)
                self._kline_sent[key] = (bucket, ts_ms)

    def _send_candle(self, st: MarketState, topic: str, bar: str, c: list[Any], closed: bool) -> None:
        self.app.log.kline_messages += 1
        self.hub.publish(st.inst.market, topic, dumps({
            "arg": {"channel": f"candle{bar}", "instId": self.wire(st.inst)},
            "data": [self._candle_wire(st.inst, c, closed)]}))


DIALECT = Okx
