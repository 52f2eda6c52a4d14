"""Binance's websocket protocol on the local exchange: the raw (``/ws``) and combined (``/stream``) endpoints.

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
"""

from __future__ import annotations

import json
from typing import Protocol

from aiohttp import web

from helios_orderflow.emulator.app import MarketApp, dumps
from helios_orderflow.emulator.hub import HUB_KEY, Connection, Hub, is_upgrade, serve
from helios_orderflow.emulator.klines import INTERVALS

_SUFFIXES = {s.lower(): s for s in ("depth", "depth@100ms", "depth@1000ms", "trade", "aggTrade", "bookTicker")}
_SUFFIXES.update({f"kline_{i}".lower(): f"kline_{i}" for i in INTERVALS})


def combined(stream: str, payload: str) -> str:
    """The ``/stream`` framing."""
    return f'{{"stream":"{stream}","data":{payload}}}'


def connection(ws: web.WebSocketResponse | None, market: str, is_combined: bool) -> Connection:
    return Connection(ws, market, combined if is_combined else None)  # type: ignore[arg-type]  # None: tests


def canonical(app: MarketApp, market: str, name: str) -> str | None:
    """Binance's spelling of a stream name, or None if no such stream is served."""
    sym, sep, suffix = name.partition("@")
    if not sep:
        return None
    canon = _SUFFIXES.get(suffix.lower())
    if canon is None or app.state_by_wire(market, sym.upper()) is None:
        return None
    if canon == "depth@1000ms":
        canon = "depth"
    return f"{sym.lower()}@{canon}"


def subscribe(hub: Hub, conn: Connection, names: list[str]) -> list[str]:
    """Subscribe ``conn`` to the named streams; returns the names that are not served."""
    bad = []
    for name in names:
        canon = canonical(hub.app, conn.market, str(name))
        if canon is None:
            bad.append(str(name))
        else:
            hub.add(conn, canon)
    return bad


def on_request(hub: Hub, conn: Connection, text: str) -> None:
    """Answer one text frame of ``conn``: exactly one JSON reply (an ack, a result or Binance's error shape);
    a malformed request never costs the connection."""
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
        bad = subscribe(hub, conn, params)
        if bad:
            conn.push(dumps({"error": {"code": 2, "msg": f"Invalid request: unknown stream(s) {bad}"}, "id": rid}))
        else:
            conn.push(dumps({"result": None, "id": rid}))
    elif method == "UNSUBSCRIBE":
        for name in params:
            canon = canonical(hub.app, conn.market, str(name))
            if canon and canon in conn.subs:
                hub.remove(conn, canon)
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
    is_combined = False
    names: list[str] = []
    for i in range(len(segs) - 1, -1, -1):
        if segs[i] in ("ws", "stream"):
            is_combined = segs[i] == "stream"
            names = [s for s in segs[i + 1:] if not s.isdigit()]
            break
    return market, is_combined, names


class HubOwner(Protocol):
    """Anything that holds a hub (the server)."""

    @property
    def hub(self) -> Hub: ...


def _on_request(owner: HubOwner, conn: Connection, text: str) -> None:
    """``on_request(owner.hub, conn, text)``: one request frame handled without a socket (the fuzz tests)."""
    on_request(owner.hub, conn, text)


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """Serve one websocket: subscriptions from the path and the query, then requests until it closes."""
    hub = request.app[HUB_KEY]
    market, is_combined, names = _route(request.path)
    if "streams" in request.query:
        is_combined = True
        names += [n for n in request.query["streams"].split("/") if n]

    def on_open(conn: Connection) -> None:
        subscribe(hub, conn, names)  # unknown names in a URL are ignored, as Binance does

    return await serve(request, lambda ws: connection(ws, market, is_combined),
                       lambda conn, text: on_request(hub, conn, text), on_open)


async def ws_or_404(request: web.Request) -> web.StreamResponse:
    """Any other GET path: a websocket when the request asks to upgrade, else 404."""
    if is_upgrade(request):
        return await handle_ws(request)
    raise web.HTTPNotFound()


def routes() -> list[web.RouteDef]:
    """The catch-all websocket route: register it after every REST route."""
    return [web.get("/{tail:.*}", ws_or_404)]
