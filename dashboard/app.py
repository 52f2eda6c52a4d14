"""The Dash app: layout, callbacks, basic auth, and a server thread for the strategy.

``create_app(source, settings)`` builds the page over any ``DashboardSource``. The browser asks for a full
figure when the pair, timeframe, scale or time range changes (``render``), and every ``refresh_ms`` for
what is new (``tick``): new heatmap columns, line points and bubbles are appended in the browser by
``assets/live.js`` (no full redraw: the user's pan and zoom stay), walls, signals and candles are replaced.

``run_in_thread(source, settings)`` serves the app from a daemon thread (werkzeug, threaded) and returns a
handle with ``.url`` and ``.stop()``; it refuses a non-loopback bind without credentials.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

import dash
from dash import Input, Output, State, dcc, html
from flask import Response, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from helios_orderflow.engine.candles import timeframe_us

from . import figures
from .settings import DashboardSettings, check_bind
from .sources import DashboardSource

log = logging.getLogger(__name__)

_TIMEFRAMES = ("1s", "5s", "10s", "15s", "30s", "1m", "3m", "5m", "15m", "30m", "1h", "4h")
_fig_ids = itertools.count(1)


def timeframe_choices(base: str) -> list[str]:
    """Timeframes the page offers: whole multiples of the engine's candle timeframe ``base``."""
    b = timeframe_us(base)
    return [t for t in _TIMEFRAMES if timeframe_us(t) % b == 0][:6]


def _label(pair: str) -> str:
    exchange, _, symbol = pair.partition(" ")
    return f"{symbol} · {exchange}"


def _hms(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%H:%M:%S")


def install_basic_auth(server: Any, credentials: tuple[str, str]) -> None:
    """Every request to ``server`` (Flask) needs HTTP basic auth with ``credentials``, else 401."""
    user, password = credentials

    @server.before_request
    def _check() -> Response | None:
        auth = request.authorization
        if (auth is not None and auth.type == "basic"
                and hmac.compare_digest((auth.username or "").encode(), user.encode())
                and hmac.compare_digest((auth.password or "").encode(), password.encode())):
            return None
        return Response("Helios dashboard: log in with the configured user and password\n", 401,
                        {"WWW-Authenticate": 'Basic realm="helios", charset="UTF-8"'})


def create_app(source: DashboardSource, settings: DashboardSettings | None = None, *,
               credentials: tuple[str, str] | None = None) -> dash.Dash:
    """The liquidity page over ``source`` (started here if it has not been). ``credentials``: require
    basic auth (``settings.credentials()`` is used when None and the settings carry some)."""
    s = settings or DashboardSettings()
    creds = credentials or s.credentials()
    # update_title=None turns off Dash's "Updating..." tab title; Dash's own annotation says str, wrongly.
    app = dash.Dash(__name__, title="Helios · liquidity", update_title=None, compress=True,  # type: ignore[arg-type]
                    assets_folder=str(__import__("pathlib").Path(__file__).parent / "assets"))
    if creds is not None:
        install_basic_auth(app.server, creds)
    source.start()
    pairs = source.pairs()
    base_tf = getattr(source, "timeframe", "1m")
    tfs = timeframe_choices(base_tf)
    app.layout = html.Div(className="helios", children=[
        html.Div(className="bar", children=[
            html.Span("HELIOS", className="brand"),
            dcc.Dropdown(id="pair", options=[{"label": _label(p), "value": p} for p in pairs],
                         value=pairs[0] if pairs else None, clearable=False, className="pair"),
            dcc.Dropdown(id="timeframe", options=[{"label": t, "value": t} for t in tfs], value=tfs[0],
                         clearable=False, className="tf"),
            dcc.RadioItems(id="scale", options=[{"label": " percentile", "value": "percentile"},
                                                {"label": " log", "value": "log"}],
                           value=s.heatmap_scale, inline=True, className="scale"),
            dcc.Checklist(id="follow", options=[{"label": " follow newest", "value": "follow"}],
                          value=["follow"], inline=True, className="follow"),
            html.Div(id="health", className="health warn", children="starting …"),
        ]),
        html.Div(className="range", children=[
            dcc.RangeSlider(id="range", min=0, max=1, value=[0, 1], step=1, allowCross=False,
                            updatemode="mouseup", marks=None, allow_direct_input=False, disabled=True),
        ]),
        dcc.Graph(id="graph", className="graph", figure=figures.empty_figure("loading …"),
                  config={"scrollZoom": True, "displaylogo": False, "responsive": True}),
        dcc.Store(id="meta"), dcc.Store(id="update"), dcc.Store(id="redraw", data=0),
        dcc.Interval(id="tick", interval=s.refresh_ms),
    ])

    def window(pair: str, follow: bool, rng: list[int] | None) -> tuple[int | None, int | None]:
        hist = source.history(pair)
        span = hist.span() if hist is not None else None
        if span is None:
            return None, None
        if follow or not rng:
            return max(span[0], span[1] - int(s.window_s * 1e6)), None
        return span[0] + int(rng[0]) * 1_000_000, span[0] + (int(rng[1]) + 1) * 1_000_000

    @app.callback(Output("graph", "figure"), Output("meta", "data"),
                  Input("pair", "value"), Input("timeframe", "value"), Input("scale", "value"),
                  Input("follow", "value"), Input("range", "value"), Input("redraw", "data"), State("meta", "data"))
    def render(pair: str, tf: str, scale: str, follow: list[str], rng: list[int], _redraw: int,
               meta: dict[str, Any] | None) -> Any:
        drawn = bool(meta) and meta.get("pair") == pair and not meta.get("empty")  # type: ignore[union-attr]
        if drawn and dash.ctx.triggered_id == "range" and "follow" in (follow or []):
            return dash.no_update, dash.no_update  # the tick moved the slider; the figure follows anyway
        hist = source.history(pair) if pair else None
        if hist is None:
            return figures.empty_figure(f"{_label(pair) if pair else 'no pair'}: waiting for data …"), {
                "pair": pair, "empty": True, "fig_id": next(_fig_ids)}
        start, end = window(pair, "follow" in (follow or []), rng)
        fig, meta = figures.build_figure(hist, start, end, scale, tf, s.max_display_columns,
                                         final=not source.live, max_bubbles=s.max_bubbles)
        meta["fig_id"] = next(_fig_ids)
        meta["follow"] = "follow" in (follow or [])
        return fig, meta

    @app.callback(Output("range", "disabled"), Input("follow", "value"))
    def follow_locks_range(follow: list[str]) -> bool:
        return "follow" in (follow or [])

    @app.callback(Output("update", "data"), Output("health", "children"), Output("health", "className"),
                  Output("range", "max"), Output("range", "marks"), Output("redraw", "data"), Output("range", "value"),
                  Input("tick", "n_intervals"), State("pair", "value"), State("meta", "data"),
                  State("redraw", "data"), State("range", "max"), State("follow", "value"))
    def tick(_n: int, pair: str, meta: dict[str, Any] | None, redraw: int, rmax: int, follow: list[str]) -> Any:
        out = _tick(pair, meta, redraw, rmax)
        value: Any = dash.no_update
        if out[3] is not dash.no_update and "follow" in (follow or []):
            m = out[3]
            value = [max(0, m - int(s.window_s)), m]
        return (*out, value)

    def _tick(pair: str, meta: dict[str, Any] | None, redraw: int, rmax: int) -> tuple[Any, ...]:
        no = dash.no_update
        health = source.health(pair) if pair else None
        banner = (health.text, f"health {health.level}") if health else ("no pair", "health warn")
        hist = source.history(pair) if pair else None
        span = hist.span() if hist is not None else None
        new_max: Any = no
        marks: Any = no
        if span is not None:
            m = max(1, (span[1] - span[0]) // 1_000_000 - 1)
            if m != rmax:
                new_max = m
                marks = {int(k): _hms(span[0] + int(k) * 1_000_000) for k in (0, m // 4, m // 2, 3 * m // 4, m)}
        if hist is None or not meta or meta.get("pair") != pair:
            return no, *banner, new_max, marks, no
        if meta.get("empty"):
            return no, *banner, new_max, marks, (redraw or 0) + (1 if span is not None else 0) or no
        if not meta.get("follow"):
            return no, *banner, new_max, marks, no
        kind, upd = figures.build_update(hist, meta, final=not source.live)
        if kind == "redraw":
            return no, *banner, new_max, marks, (redraw or 0) + 1
        if kind == "append" and upd is not None:
            upd["from_seq"] = meta["seq"]
            upd["fig_id"] = meta["fig_id"]
            upd["meta"]["fig_id"] = meta["fig_id"]
            return upd, *banner, new_max, marks, no
        return no, *banner, new_max, marks, no

    app.clientside_callback(
        dash.ClientsideFunction(namespace="helios", function_name="apply"),
        Output("meta", "data", allow_duplicate=True),
        Input("update", "data"), State("meta", "data"),
        prevent_initial_call=True,
    )
    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (the page polls every second)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class ServerHandle:
    """A running page: ``url`` to open, ``stop()`` to shut the server and the source down (<= 5 s)."""

    url: str
    server: BaseWSGIServer
    thread: threading.Thread
    source: DashboardSource

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
        self.server.server_close()
        self.source.stop()


def run_in_thread(source: DashboardSource, settings: DashboardSettings | None = None, *,
                  credentials: tuple[str, str] | None = None) -> ServerHandle:
    """Serve the page for ``source`` from a daemon thread; raises DashboardAuthError for a non-loopback
    ``settings.host`` without credentials (environment or config)."""
    s = settings or DashboardSettings()
    creds = credentials or s.credentials()
    check_bind(s.host, creds)
    app = create_app(source, s, credentials=creds)
    server = make_server(s.host, s.port, app.server, threaded=True, request_handler=_QuietHandler)
    host = s.host if ":" not in s.host else f"[{s.host}]"
    url = f"http://{host}:{server.server_port}/"
    thread = threading.Thread(target=server.serve_forever, name="helios-dashboard", daemon=True)
    thread.start()
    log.info("Helios dashboard at %s", url)
    return ServerHandle(url, server, thread, source)
