"""The Dash app: layout, callbacks, basic auth, and a server thread for the strategy.

``create_app(source, settings)`` builds the page over any ``DashboardSource``: the Plotly liquidity heatmap
on top, with the session and visible-range volume profiles at its right edge and the footprint over it
(``profile.py``), and TradingView's Lightweight Charts (candles, VWAP bands, volume, CVD, OFI, walls, markers)
below it on the same time axis. The browser asks for a full figure when the pair, timeframe, scale, colours,
views or time range change (``render``); everything newer is pushed to it over a WebSocket (``push.py``): new
heatmap columns, line points, bubbles and footprint cells are appended in the browser by ``assets/live.js``
(no full redraw: the user's pan and zoom stay), walls, signals, the session profile and the Lightweight Charts
data are replaced, the health banner and the time-range control are updated. The browser never polls for live data.

Lightweight Charts is the official standalone build (v5) shipped unmodified, with its Apache-2.0 header, in
the ``lwcharts`` package (an install requirement); the page serves it from the installed package at
``LW_SCRIPT_URL``, so it works without internet and the file is never copied into this tree.

``run_in_thread(source, settings)`` serves the app from a daemon thread (werkzeug, threaded) and returns a
handle with ``.url`` and ``.stop()``; it refuses a non-loopback bind without credentials.
"""

from __future__ import annotations

import hmac
import importlib.util
import itertools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import dash
from dash import Input, Output, State, dcc, html
from flask import Response, request, send_file
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.candles import timeframe_us

from . import figures, push
from .profile import SessionProfiles
from .settings import COLORS, DashboardSettings, HeliosDashboardError, check_bind
from .sources import DashboardSource

log = logging.getLogger(__name__)

#: Where the page loads Lightweight Charts from (``serve_lightweight_charts``).
LW_SCRIPT_URL = "/_helios/lightweight-charts.standalone.production.js"
_TIMEFRAMES = ("1s", "5s", "10s", "15s", "30s", "1m", "3m", "5m", "15m", "30m", "1h", "4h")
_fig_ids = itertools.count(1)


def timeframe_choices(base: str) -> list[str]:
    """Timeframes the page offers: whole multiples of the engine's candle timeframe ``base``."""
    b = timeframe_us(base)
    return [t for t in _TIMEFRAMES if timeframe_us(t) % b == 0][:6]


def _label(pair: str) -> str:
    exchange, _, symbol = pair.partition(" ")
    return f"{symbol} · {exchange}"


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


def lightweight_charts_file() -> Path:
    """The official Lightweight Charts standalone build inside the installed ``lwcharts`` package."""
    # Located, not imported: the package's Python side (a pandas wrapper) is not used.
    spec = importlib.util.find_spec("lwcharts")
    if spec is None or spec.origin is None:
        raise HeliosDashboardError("the dashboard needs the 'lwcharts' package (it ships TradingView's Lightweight "
                                   "Charts): pip install lwcharts, or reinstall helios-orderflow")
    path = Path(spec.origin).parent / "vendor" / "lightweight-charts.standalone.production.js"
    if not path.is_file():
        raise HeliosDashboardError(f"'{path}' is missing: the installed lwcharts package does not ship Lightweight "
                                   "Charts' standalone build; reinstall it (pip install --force-reinstall lwcharts)")
    return path


def serve_lightweight_charts(server: Any) -> None:
    """Serve the Lightweight Charts script at ``LW_SCRIPT_URL`` from the installed package (behind the same
    basic auth as every other route)."""
    path = lightweight_charts_file()

    @server.route(LW_SCRIPT_URL)
    def _lightweight_charts() -> Response:
        return send_file(path, mimetype="text/javascript", max_age=86_400)


def _bot_trades(source: DashboardSource, pair: str) -> list[Any]:
    get = getattr(source, "bot_trades", None)  # only the live source, beside the bot, has any
    return list(get(pair)) if get is not None else []


def create_app(source: DashboardSource, settings: DashboardSettings | None = None, *,
               credentials: tuple[str, str] | None = None) -> dash.Dash:
    """The liquidity page over ``source`` (started here if it has not been). ``credentials``: require
    basic auth (``settings.credentials()`` is used when None and the settings carry some)."""
    s = settings or DashboardSettings()
    creds = credentials or s.credentials()
    # The footprint and profile settings: the source's (the bot's config, or the replay's), else defaults.
    helios = getattr(source, "settings", None)
    helios = helios if isinstance(helios, HeliosSettings) else HeliosSettings()
    flow = figures.PageFlow.from_settings(helios)
    sessions = SessionProfiles(flow.lag_us, helios.flow.session_anchor_utc, flow.value_area_pct,
                               flow.value_area_step)
    # update_title=None turns off Dash's "Updating..." tab title; Dash's own annotation says str, wrongly.
    app = dash.Dash(__name__, title="Helios · liquidity", update_title=None, compress=True,  # type: ignore[arg-type]
                    assets_folder=str(Path(__file__).parent / "assets"), external_scripts=[LW_SCRIPT_URL])
    if creds is not None:
        install_basic_auth(app.server, creds)
    serve_lightweight_charts(app.server)
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
            dcc.RadioItems(id="colors", options=[{"label": f" {c}", "value": c} for c in COLORS],
                           value=s.heatmap_colors, inline=True, className="scale colors"),
            dcc.Checklist(id="views", options=[{"label": " volume profile", "value": "profile"},
                                               {"label": " footprint", "value": "footprint"}],
                          value=list(figures.DEFAULT_VIEWS), inline=True, className="follow views"),
            dcc.Checklist(id="follow", options=[{"label": " follow newest", "value": "follow"}],
                          value=["follow"], inline=True, className="follow"),
            html.Div(id="health", className="health warn", children="starting …"),
        ]),
        html.Div(className="range", children=[
            dcc.RangeSlider(id="range", min=0, max=1, value=[0, 1], step=1, allowCross=False,
                            updatemode="mouseup", marks=None, allow_direct_input=False, disabled=True),
        ]),
        html.Div(className="charts", children=[
            dcc.Graph(id="graph", className="graph", figure=figures.empty_figure("loading …"),
                      config={"scrollZoom": True, "displaylogo": False, "responsive": True}),
            # Lightweight Charts draws into this div (assets/live.js); Dash never re-renders it.
            html.Div(id="lw", className="lw", **cast(dict[str, Any], {"data-ws": push.WS_URL})),
        ]),
        html.Div(id="cursor", className="cursor", children="\u00a0"),
        dcc.Store(id="meta"), dcc.Store(id="redraw", data=0), dcc.Store(id="lwdata"), html.Div(id="push", hidden=True),
    ])

    def window(pair: str, follow: bool, rng: list[int] | None) -> tuple[int | None, int | None]:
        hist = source.history(pair)
        span = hist.span() if hist is not None else None
        if span is None:
            return None, None
        if follow or not rng:
            return max(span[0], span[1] - int(s.window_s * 1e6)), None
        return span[0] + int(rng[0]) * 1_000_000, span[0] + (int(rng[1]) + 1) * 1_000_000

    def technical(hist: Any, pair: str, tf: str, meta: dict[str, Any]) -> dict[str, Any]:
        return figures.technical_data(hist, tf, int(meta["start_us"]), int(meta["end_us"]), hist.last_ts_us,
                                      bot_trades=_bot_trades(source, pair))

    @app.callback(Output("graph", "figure"), Output("meta", "data"), Output("lwdata", "data"),
                  Input("pair", "value"), Input("timeframe", "value"), Input("scale", "value"),
                  Input("colors", "value"), Input("views", "value"),
                  Input("follow", "value"), Input("range", "value"), Input("redraw", "data"), State("meta", "data"))
    def render(pair: str, tf: str, scale: str, colors: str, views: list[str], follow: list[str], rng: list[int],
               _redraw: int, meta: dict[str, Any] | None) -> Any:
        drawn = bool(meta) and meta.get("pair") == pair and not meta.get("empty")  # type: ignore[union-attr]
        if drawn and dash.ctx.triggered_id == "range" and "follow" in (follow or []):
            # the push socket moved the slider; the figure follows anyway
            return dash.no_update, dash.no_update, dash.no_update
        hist = source.history(pair) if pair else None
        if hist is None:
            return figures.empty_figure(f"{_label(pair) if pair else 'no pair'}: waiting for data …"), {
                "pair": pair, "empty": True, "fig_id": next(_fig_ids)}, None
        start, end = window(pair, "follow" in (follow or []), rng)
        fig, meta = figures.build_figure(hist, start, end, scale, tf, s.max_display_columns,
                                         final=not source.live, max_bubbles=s.max_bubbles, colors=colors,
                                         views=views or [], flow=flow, session=sessions.profile(pair, hist))
        meta["fig_id"] = next(_fig_ids)
        meta["follow"] = "follow" in (follow or [])
        # The drawn figure says which it is: pushed columns wait until the graph shows their figure.
        fig["layout"]["meta"] = {"fig_id": meta["fig_id"]}
        if meta.get("empty"):
            return fig, meta, None
        lw = technical(hist, pair, tf, meta)
        lw["fig_id"] = meta["fig_id"]
        return fig, meta, lw

    app.server.extensions["helios_push"] = push.install_push(app, source, technical, window_s=s.window_s,
                                                             session=sessions.profile)

    @app.callback(Output("range", "disabled"), Input("follow", "value"))
    def follow_locks_range(follow: list[str]) -> bool:
        return "follow" in (follow or [])

    app.clientside_callback(
        dash.ClientsideFunction(namespace="helios", function_name="subscribe"),
        Output("push", "title"), Input("meta", "data"),
    )
    app.clientside_callback(
        dash.ClientsideFunction(namespace="helios", function_name="technical"),
        Output("lw", "title"), Input("lwdata", "data"), State("meta", "data"),
    )
    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (every figure and script request would log one)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class ServerHandle:
    """A running page: ``url`` to open, ``stop()`` to shut the server and the source down (<= 5 s)."""

    url: str
    server: BaseWSGIServer
    thread: threading.Thread
    source: DashboardSource
    #: The push sockets (``hub.drop_all()`` cuts them, as a server restart would).
    hub: push.Hub

    def stop(self) -> None:
        self.hub.drop_all(refuse_for_s=3600.0)  # the sockets' threads end; no page reconnects meanwhile
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
    return ServerHandle(url, server, thread, source, app.server.extensions["helios_push"])
