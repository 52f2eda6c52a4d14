"""The local exchange's websocket plumbing that every venue dialect shares: a connection with its outgoing
queue, the hub that fans a payload out to the subscribers of a topic, and the loop that serves one socket.

What a dialect adds (``dialects/``): the URL it listens on, how a client subscribes (its request frames and
their answers), the topic names, and how a payload is framed for a connection (``Connection.wrap``).

- A client with more than ``MAX_QUEUED`` frames waiting is disconnected (code 1008), as venues drop slow
  consumers.
- The server sends a websocket ping every ``ping_interval_s`` and answers the client's ping frames, unless
  the ``noping`` fault is on for the connection (then neither; a dialect whose clients ping in text frames
  asks ``MarketApp.noping_active`` before it answers them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from helios_orderflow.emulator.app import MarketApp

MAX_QUEUED = 20_000  # frames waiting for one client before it is disconnected as too slow

#: ``wrap(topic, payload) -> frame``: how a dialect frames a payload for one connection (None: as is).
Wrap = Callable[[str, str], str]


class Connection:
    """One websocket client: its market, framing, subscribed topics and outgoing queue.

    ``data``: whatever the dialect keeps per connection (for example the request id of a subscription)."""

    def __init__(self, ws: web.WebSocketResponse, market: str, wrap: Wrap | None = None) -> None:
        self.ws = ws
        self.market = market
        self.wrap = wrap
        self.subs: set[str] = set()
        self.out: list[str] = []
        self.wake = asyncio.Event()
        self.opened = time.monotonic()
        self.closed = False
        self.closer: asyncio.Future[bool] | None = None
        self.data: dict[str, Any] = {}

    def push(self, text: str) -> None:
        if self.closed:
            return
        if len(self.out) >= MAX_QUEUED:
            # a consumer this far behind is cut off, as venues do; its client reconnects and resyncs
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
    """Connections by subscribed topic: ``publish`` sends one payload to every subscriber of a topic, framed
    per connection by its ``wrap`` (computed once per distinct framing)."""

    def __init__(self, app: MarketApp) -> None:
        self.app = app
        self.conns: set[Connection] = set()
        self.subs: dict[tuple[str, str], set[Connection]] = {}

    def subscribers(self, market: str, topic: str) -> int:
        return len(self.subs.get((market, topic), ()))

    def publish(self, market: str, topic: str, payload: str) -> None:
        conns = self.subs.get((market, topic))
        if not conns:
            return
        framed: dict[Wrap, str] = {}
        for c in conns:
            if c.wrap is None:
                c.push(payload)
                continue
            text = framed.get(c.wrap)
            if text is None:
                text = framed[c.wrap] = c.wrap(topic, payload)
            c.push(text)

    def publish_raw(self, market: str, topic: str, text: str) -> None:
        """Send ``text`` unframed to every subscriber (malformed frames)."""
        for c in self.subs.get((market, topic), ()):
            c.push(text)

    def add(self, conn: Connection, topic: str) -> None:
        conn.subs.add(topic)
        self.subs.setdefault((conn.market, topic), set()).add(conn)
        counts = self.app.log.subscriptions
        counts[topic] = counts.get(topic, 0) + 1

    def remove(self, conn: Connection, topic: str) -> None:
        conn.subs.discard(topic)
        self.subs.get((conn.market, topic), set()).discard(conn)

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


#: The websocket ``Hub`` of the server handling a request: ``request.app[HUB_KEY]``.
HUB_KEY: web.AppKey[Hub] = web.AppKey("helios_exchange_hub", Hub)


async def serve(request: web.Request, conn_for: Callable[[web.WebSocketResponse], Connection],
                on_text: Callable[[Connection, str], None],
                on_open: Callable[[Connection], None] | None = None) -> web.WebSocketResponse:
    """Serve one websocket until it closes: ``conn_for`` makes its connection, ``on_open`` greets it (a
    venue's welcome message, subscriptions named in the URL), ``on_text`` answers each text frame."""
    hub = request.app[HUB_KEY]
    app = hub.app
    ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
    await ws.prepare(request)
    conn = conn_for(ws)
    hub.conns.add(conn)
    writer = asyncio.ensure_future(conn.writer())
    pinger = asyncio.ensure_future(_pinger(app, conn))
    app.log.ws_connections += 1
    try:
        if on_open is not None:
            on_open(conn)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                on_text(conn, msg.data)
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


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"
