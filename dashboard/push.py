"""WebSocket push: the server sends each open page what is new, as soon as the source has it.

One socket per page at ``WS_URL`` on the page's own server (flask-sock over werkzeug: same host, port and
origin, so the page's basic auth and its 127.0.0.1 default cover it; a handshake without credentials gets
the same 401 as any other request). Messages are JSON text frames.

Browser -> server:

- ``{"type": "subscribe", "pair": str, "meta": dict | null}``: what the page shows: the figure's ``meta``
  (``figures.build_figure``; null while the page has no figure for the pair). Sent when the socket opens
  (and after every reconnect) and whenever the page draws a new figure. ``meta["seq"]`` is the sequence
  number of the newest heatmap column the page holds: the server continues right after it.

Server -> browser:

- ``{"type": "columns", "from_seq", "fig_id", "meta", "heat", "lines", "buys", "sells", "replace", "footprint",
  "lw", ...}``: the complete display columns after ``from_seq`` (heatmap column, best bid/ask, the trade bubble
  batch of those columns, walls, signals and the session volume profile), the footprint cells of the candles
  those columns fall in (``footprint``: replacing the page's cells from ``from_x`` on) and the candle update
  (``lw``: ``figures.technical_data``). ``meta``
  is the figure's new meta; its ``seq`` is the newest column sent. The page applies a message only if
  ``from_seq`` equals the ``seq`` it holds and ``fig_id`` its figure: a column is never applied twice.
- ``{"type": "redraw"}``: the page must rebuild its figure (new columns do not fit its price grid, the ring
  dropped columns it never got, or data arrived for a page that had none).
- ``{"type": "health", "level", "text"}``: the banner (sent when it changes, its text at most once a second).
- ``{"type": "range", "max", "marks", "window_s"}``: the time-range control's extent (seconds of history);
  a page following the newest data moves its selection to the last ``window_s``.

Resume: after a dropped connection the page reconnects (backoff 0.25 s doubling to 5 s, with jitter) and
subscribes with the meta it holds, so the server sends exactly the columns after the last one it has: no
gap, no duplicate. If those columns have left the bounded history, it sends ``redraw``.

Each socket is served by its own werkzeug thread, which checks its pair's history every ``TICK_S`` (an
in-process look at a sequence number; nothing crosses the network until there is something new).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import socket
import threading
import time
from typing import Any

from flask_sock import Sock  # type: ignore[import-untyped]  # no type information shipped

from . import figures
from .sources import DashboardSource

log = logging.getLogger(__name__)

WS_URL = "/_helios/ws"
#: How often a socket's thread looks for new columns, s (bounds the push latency it adds).
TICK_S = 0.02
#: A banner whose level did not change is resent at most this often, s (its text counts seconds).
HEALTH_EVERY_S = 1.0


def _hms(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%H:%M:%S")


def _finite(v: Any) -> Any:
    """``v`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def range_marks(span: tuple[int, int]) -> tuple[int, dict[int, str]]:
    """The time-range control over ``span`` (µs): its max (whole seconds) and five labelled marks."""
    m = max(1, (span[1] - span[0]) // 1_000_000 - 1)
    return m, {int(k): _hms(span[0] + int(k) * 1_000_000) for k in (0, m // 4, m // 2, 3 * m // 4, m)}


class Hub:
    """The open sockets of one app; ``drop_all`` cuts them (shutdown, and the reconnect test)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: set[Connection] = set()
        self._refuse_until = 0.0
        self.connections_total = 0

    def add(self, conn: Connection) -> None:
        with self._lock:
            self._conns.add(conn)
            self.connections_total += 1

    def remove(self, conn: Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    @property
    def open(self) -> int:
        with self._lock:
            return len(self._conns)

    def refusing(self) -> bool:
        return time.monotonic() < self._refuse_until

    def drop_all(self, refuse_for_s: float = 0.0) -> int:
        """Cut every open socket at the TCP level, as a dying server would (no close frame), and refuse new
        ones for ``refuse_for_s`` seconds (503). Returns how many were cut."""
        self._refuse_until = time.monotonic() + refuse_for_s
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            c.kill()
        return len(conns)


class Connection:
    """One page's socket: what it shows (pair, meta) and what it was last sent."""

    def __init__(self, ws: Any, source: DashboardSource, technical: Any, window_s: float,
                 session: Any = None) -> None:
        self.ws = ws
        self.session = session
        self.window_s = window_s
        self.source = source
        self.technical = technical
        self.pair: str | None = None
        self.meta: dict[str, Any] | None = None
        self.redraw_sent = False
        self.health: tuple[str, str] | None = None
        self.health_sent_s = 0.0
        self.rmax: int | None = None
        self.closed = False

    def kill(self) -> None:
        self.closed = True
        sock = getattr(self.ws, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def send(self, msg: dict[str, Any]) -> None:
        try:
            text = json.dumps(msg, separators=(",", ":"), allow_nan=False)
        except ValueError:  # a NaN slipped through: the browser's JSON.parse would reject the whole message
            text = json.dumps(_finite(msg), separators=(",", ":"), allow_nan=False)
        self.ws.send(text)

    def on_message(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict) or msg.get("type") != "subscribe":
            return
        pair = msg.get("pair")
        meta = msg.get("meta")
        if not isinstance(pair, str) or pair not in self.source.pairs():
            return
        if pair != self.pair:
            self.health = None
            self.rmax = None
        self.pair = pair
        self.meta = meta if isinstance(meta, dict) and meta.get("pair") == pair else None
        self.redraw_sent = False

    def run(self) -> None:
        while not self.closed:
            text = self.ws.receive(timeout=TICK_S)
            while text is not None:  # every queued message first: the newest subscription wins
                self.on_message(text)
                text = self.ws.receive(timeout=0)
            if self.pair is not None:
                self.push()

    def push(self) -> None:
        pair = self.pair
        assert pair is not None
        h = self.source.health(pair)
        now = time.monotonic()
        if self.health is None or h.level != self.health[0] or (
                h.text != self.health[1] and now - self.health_sent_s >= HEALTH_EVERY_S):
            self.send({"type": "health", "level": h.level, "text": h.text})
            self.health = (h.level, h.text)
            self.health_sent_s = now
        hist = self.source.history(pair)
        span = hist.span() if hist is not None else None
        if span is not None:
            m, marks = range_marks(span)
            if m != self.rmax:
                self.send({"type": "range", "max": m, "marks": marks, "window_s": int(self.window_s)})
                self.rmax = m
        if hist is None:
            return
        meta = self.meta
        if meta is None or meta.get("empty"):
            if span is not None and not self.redraw_sent:
                self.send({"type": "redraw"})
                self.redraw_sent = True
            return
        if not meta.get("follow"):
            return
        kind, upd = figures.build_update(hist, meta, final=not self.source.live,
                                         session=self.session(pair, hist) if self.session is not None else None)
        if kind == "redraw":
            if not self.redraw_sent:
                self.send({"type": "redraw"})
                self.redraw_sent = True
            return
        if kind != "append" or upd is None:
            return
        upd["type"] = "columns"
        upd["from_seq"] = meta["seq"]
        upd["fig_id"] = meta.get("fig_id")
        upd["meta"]["fig_id"] = meta.get("fig_id")
        upd["lw"] = self.technical(hist, pair, meta["timeframe"], upd["meta"])
        upd["lw"]["fig_id"] = meta.get("fig_id")
        upd["sent_ms"] = time.time() * 1000.0  # for the latency figures of the browser test
        self.send(upd)
        self.meta = upd["meta"]


def install_push(app: Any, source: DashboardSource, technical: Any, *, window_s: float, session: Any = None) -> Hub:
    """Serve the push socket at ``WS_URL`` on the Dash ``app``'s Flask server; returns its ``Hub``.
    ``technical(hist, pair, timeframe, meta)`` builds the candle payload (``figures.technical_data``);
    ``window_s``: the seconds the time-range control spans while following the newest data; ``session(pair,
    hist)``: the session volume profile (``profile.SessionProfiles.profile``)."""
    from flask import Response

    hub = Hub()
    server = app.server
    sock = Sock(server)

    @server.before_request
    def _refuse_while_down() -> Response | None:
        from flask import request

        if request.path == WS_URL and hub.refusing():
            return Response("push socket restarting\n", 503)
        return None

    @sock.route(WS_URL)
    def _push(ws: Any) -> None:
        conn = Connection(ws, source, technical, window_s, session)
        hub.add(conn)
        try:
            conn.run()
        except Exception as exc:  # a closed socket ends here; anything else is logged, never kills the server
            if "ConnectionClosed" not in type(exc).__name__:
                log.exception("dashboard push socket failed")
        finally:
            hub.remove(conn)

    return hub
