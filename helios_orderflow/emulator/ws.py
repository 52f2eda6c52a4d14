"""WebSocket side of the local exchange: Binance's raw (``/ws``) and combined (``/stream``) endpoints.

- A path whose segments contain ``fstream`` or ``fapi`` serves USD-M futures symbols, any other spot.
- The last ``ws`` or ``stream`` segment of the path picks the framing: ``/ws`` sends raw payloads,
  ``/stream`` wraps them as ``{"stream": name, "data": payload}``. Stream names may follow
  (``/ws/btcusdt@trade``, ``/stream?streams=btcusdt@trade/ethusdt@depth``); a bare number after them (ccxt
  connects to ``.../ws/0``) is ignored. So ccxt's ``urls.api.ws`` can be ``http://host:port/stream`` for spot
  (ccxt needs ``/stream`` in a spot URL) and ``http://host:port/fstream/ws`` for futures.
- Requests: ``SUBSCRIBE``/``UNSUBSCRIBE`` (acked ``{"result": null, "id": N}``), ``LIST_SUBSCRIPTIONS``,
  ``SET_PROPERTY``/``GET_PROPERTY``; an unknown stream is answered with Binance's error shape.
- Streams (symbol lower-case): ``@depth`` (1000 ms diffs), ``@depth@100ms``, ``@trade``, ``@aggTrade``,
  ``@bookTicker``, ``@kline_<interval>``.
- The server pings every ``ping_interval_s`` and answers client pings (unless the ``noping`` fault is on).
- A client with more than ``MAX_QUEUED`` frames waiting is disconnected (code 1008), as Binance drops slow
  consumers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Protocol

from aiohttp import WSMsgType, web

from helios_orderflow.emulator.app import MarketApp, dumps
from helios_orderflow.emulator.klines import INTERVALS

log = logging.getLogger(__name__)

_SUFFIXES = {s.lower(): s for s in ("depth", "depth@100ms", "depth@1000ms", "trade", "aggTrade", "bookTicker")}
_SUFFIXES.update({f"kline_{i}".lower(): f"kline_{i}" for i in INTERVALS})

MAX_QUEUED = 20_000  # frames waiting for one client before it is disconnected as too slow


class Connection:
    """One websocket client: its framing, market, subscriptions and outgoing queue."""

    def __init__(self, ws: web.WebSocketResponse, market: str, combined: bool) -> None:
        self.ws = ws
        self.market = market
        self.combined = combined
        self.subs: set[str] = set()
        self.out: list[str] = []
        self.wake = asyncio.Event()
        self.opened = time.monotonic()
        self.closed = False
        self.closer: asyncio.Future[bool] | None = None

    def push(self, text: str) -> None:
        if self.closed:
            return
        if len(self.out) >= MAX_QUEUED:
            # a consumer this far behind is cut off, as Binance does; its client reconnects and resyncs
            self.closed = True
            self.out.clear()
            self.closer = asyncio.ensure_future(self.ws.close(code=1008, message=b"slow consumer"))
            return
        self.out.append(text)
        self.wake.set()

    async def writer(self) -> None:
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake.clear()
                out, self.out = self.out, []
                for text in out:
                    await self.ws.send_str(text)
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            self.closed = True


class Hub:
    """Connections by subscribed stream; publishes one payload to all subscribers of a stream and answers
    the requests clients send (``on_request``)."""

    def __init__(self, app: MarketApp) -> None:
        self.app = app
        self.conns: set[Connection] = set()
        self.subs: dict[tuple[str, str], set[Connection]] = {}

    def subscribers(self, market: str, stream: str) -> int:
        return len(self.subs.get((market, stream), ()))

    def publish(self, market: str, stream: str, payload: str) -> None:
        conns = self.subs.get((market, stream))
        if not conns:
            return
        wrapped = None
        for c in conns:
            if c.combined:
                if wrapped is None:
                    wrapped = f'{{"stream":"{stream}","data":{payload}}}'
                c.push(wrapped)
            else:
                c.push(payload)

    def publish_raw(self, market: str, stream: str, text: str) -> None:
        """Send ``text`` unwrapped to every subscriber (used for malformed frames)."""
        for c in self.subs.get((market, stream), ()):
            c.push(text)

    def canonical(self, market: str, name: str) -> str | None:
        """Binance's spelling of a stream name, or None if no such stream is served."""
        sym, sep, suffix = name.partition("@")
        if not sep:
            return None
        canon = _SUFFIXES.get(suffix.lower())
        if canon is None or self.app.state_by_wire(market, sym.upper()) is None:
            return None
        if canon == "depth@1000ms":
            canon = "depth"
        return f"{sym.lower()}@{canon}"

    def subscribe(self, conn: Connection, names: list[str]) -> list[str]:
        bad = []
        for name in names:
            canon = self.canonical(conn.market, str(name))
            if canon is None:
                bad.append(str(name))
                continue
            conn.subs.add(canon)
            self.subs.setdefault((conn.market, canon), set()).add(conn)
            log_subs = self.app.log.subscriptions
            log_subs[canon] = log_subs.get(canon, 0) + 1
        return bad

    def unsubscribe(self, conn: Connection, names: list[str]) -> None:
        for name in names:
            canon = self.canonical(conn.market, str(name))
            if canon and canon in conn.subs:
                conn.subs.discard(canon)
                self.subs.get((conn.market, canon), set()).discard(conn)

    def drop(self, conn: Connection) -> None:
        conn.closed = True
        conn.wake.set()
        self.conns.discard(conn)
        for name in conn.subs:
            self.subs.get((conn.market, name), set()).discard(conn)

    async def close_all(self, code: int = 1001) -> int:
        conns = list(self.conns)
        for c in conns:
            try:
                await c.ws.close(code=code, message=b"server closed the connection")
            except Exception:  # already gone
                pass
        return len(conns)

    def on_request(self, conn: Connection, text: str) -> None:
        """Answer one text frame of ``conn``: exactly one JSON reply (an ack, a result or Binance's error
        shape); a malformed request never costs the connection."""
        try:
            req = json.loads(text)
            method = req.get("method")
            rid = req.get("id")
        except (ValueError, AttributeError):
            conn.push(dumps({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}}))
            return
        params = req.get("params") or []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and (
            not isinstance(params, list) or not all(isinstance(p, str) for p in params)
        ):
            # Binance answers a malformed request with an error and keeps the connection.
            conn.push(dumps({"error": {"code": 2, "msg": "Invalid request: params must be a list of stream names"},
                             "id": rid}))
            return
        if method == "SUBSCRIBE":
            bad = self.subscribe(conn, params)
            if bad:
                conn.push(dumps({"error": {"code": 2, "msg": f"Invalid request: unknown stream(s) {bad}"}, "id": rid}))
            else:
                conn.push(dumps({"result": None, "id": rid}))
        elif method == "UNSUBSCRIBE":
            self.unsubscribe(conn, params)
            conn.push(dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            conn.push(dumps({"result": sorted(conn.subs), "id": rid}))
        elif method == "SET_PROPERTY":
            conn.push(dumps({"result": None, "id": rid}))
        elif method == "GET_PROPERTY":
            conn.push(dumps({"result": False, "id": rid}))
        else:
            conn.push(dumps({"error": {"code": 1, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}))


def _route(path: str) -> tuple[str, bool, list[str]]:
    """(market, combined, stream names in the path) for a websocket path."""
    segs = [s for s in path.split("/") if s]
    market = "linear" if any(s in ("fstream", "fapi") for s in segs) else "spot"
    combined = False
    names: list[str] = []
    for i in range(len(segs) - 1, -1, -1):
        if segs[i] in ("ws", "stream"):
            combined = segs[i] == "stream"
            names = [s for s in segs[i + 1:] if not s.isdigit()]
            break
    return market, combined, names


#: The websocket ``Hub`` of the server handling a request: ``request.app[HUB_KEY]``.
HUB_KEY: web.AppKey[Hub] = web.AppKey("helios_exchange_hub", Hub)


class HubOwner(Protocol):
    """Anything that holds a hub (the server)."""

    @property
    def hub(self) -> Hub: ...


def _on_request(owner: HubOwner, conn: Connection, text: str) -> None:
    """``owner.hub.on_request(conn, text)``: one request frame handled without a socket (the fuzz tests)."""
    owner.hub.on_request(conn, text)


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """Serve one websocket: subscriptions from the path and the query, then requests until it closes."""
    hub = request.app[HUB_KEY]
    app = hub.app
    market, combined, names = _route(request.path)
    if "streams" in request.query:
        combined = True
        names += [n for n in request.query["streams"].split("/") if n]
    ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    conn = Connection(ws, market, combined)
    hub.conns.add(conn)
    hub.subscribe(conn, names)
    writer = asyncio.ensure_future(conn.writer())
    pinger = asyncio.ensure_future(_pinger(app, conn))
    app.log.ws_connections += 1
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                hub.on_request(conn, msg.data)
            elif msg.type == WSMsgType.PING:
                if not app.noping_active(conn.opened):
                    await ws.pong(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        hub.drop(conn)
        pinger.cancel()
        writer.cancel()
    return ws


async def _pinger(app: MarketApp, conn: Connection) -> None:
    try:
        while not conn.closed:
            await asyncio.sleep(app.ping_interval_s)
            if conn.closed or app.noping_active(conn.opened):
                continue
            await conn.ws.ping(b"helios")
    except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
        pass


async def ws_or_404(request: web.Request) -> web.StreamResponse:
    """Any other GET path: a websocket when the request asks to upgrade, else 404."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await handle_ws(request)
    raise web.HTTPNotFound()


def routes() -> list[web.RouteDef]:
    """The catch-all websocket route: register it after every REST route."""
    return [web.get("/{tail:.*}", ws_or_404)]
