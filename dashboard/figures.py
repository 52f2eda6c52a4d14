"""The page's data: the Plotly liquidity heatmap and the Lightweight Charts technical view beside it.

``build_figure`` draws a time range of a ``PairHistory`` as one Plotly figure: the liquidity heatmap with
best bid/ask lines, trade bubbles, walls and signals. It returns the figure and a JSON-able ``meta`` dict
that ``build_update`` needs to append newer columns to the same figure in the browser (``assets/live.js``
applies them without redrawing from scratch, so pan and zoom stay).

``technical_data`` is the candle side, drawn by TradingView's Lightweight Charts in the browser (the
design's candle view): candles of the chosen timeframe, session VWAP and its 1 and 2 sigma bands, volume,
CVD and OFI per candle, active walls (price lines) and absorption/exhaustion and the bot's entries and
exits (markers). It is small (one row per candle) and always sent whole.

Wire size: the heatmap is sent as one uint8 colour level per cell (base64 typed array: 1 byte per cell
before compression), on a fixed absolute price grid; times are epoch milliseconds on a date axis.
Everything the browser appends to is a plain JSON list (Plotly can only extend plain arrays).
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.candles import timeframe_us

from . import scaling
from .history import HistorySlice, PairHistory
from .profile import Footprint, ProfileLevels, footprint_cells

#: Trace indices (assets/live.js and build_update rely on them).
TRACE = {
    "heatmap": 0, "buys": 1, "sells": 2, "best_bid": 3, "best_ask": 4, "walls_ended": 5, "walls": 6,
    "wall_labels": 7, "absorption": 8, "exhaustion": 9, "footprint": 10, "bid_imbalance": 11, "ask_imbalance": 12,
    "profile_session": 13, "profile_visible": 14, "session_levels": 15, "profile_levels": 16,
}
#: The page's optional views (the "views" control): the volume profiles, the footprint.
VIEWS = ("profile", "footprint")
#: Shown when a page opens: the profiles (the footprint's numbers are for zooming in).
DEFAULT_VIEWS = ("profile",)
#: The volume profiles take at most this share of the heatmap's width, drawn from its right edge.
PROFILE_WIDTH = 0.22
APPEND_LINES = ("best_bid", "best_ask")
#: The design's dark theme (shared with the Lightweight Charts panes in assets/live.js).
BG = "#121212"
PANEL = "#000000"
GRID = "#1f1f1f"
TEXT = "#c9d1d9"
BUY = "#00ff84"
SELL = "#ff4976"
BID_LINE = "#36d0ff"
ASK_LINE = "#ff7ad9"
#: Largest trade bubble diameter, px; a bubble's area is proportional to its volume.
BUBBLE_MAX_PX = 24
BUBBLE_MIN_PX = 3
#: Most bubbles kept in a live figure (oldest dropped first).
BUBBLE_CAP = 20_000


def _ms(us: np.ndarray | int | float) -> Any:
    return np.asarray(us, dtype=np.float64) / 1000.0


def _rounded(a: np.ndarray, digits: int) -> list[float | None]:
    return [None if not math.isfinite(v) else round(v, digits) for v in a.tolist()]


def price_digits(bin_size: float) -> int:
    """Decimals that show a price on this grid (bin 5.0 -> 2; 0.0001 -> 6)."""
    return max(2, min(10, 2 - math.floor(math.log10(bin_size)) if bin_size > 0 else 2))


def _trace(kind: str, **attrs: Any) -> dict[str, Any]:
    """A trace as a plain dict (plotly.graph_objects validation costs more than the whole figure build)."""
    return {"type": kind, **attrs}


def typed_array(a: np.ndarray) -> dict[str, str]:
    """A uint8 array as a Plotly typed-array spec (base64; plotly.js decodes it without a JSON parse)."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    spec = {"dtype": "u1", "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim == 2:
        spec["shape"] = f"{a.shape[0]}, {a.shape[1]}"
    return spec


# ---- aggregation ----------------------------------------------------------------------------------------


def _buckets(sl: HistorySlice, disp_us: int) -> tuple[np.ndarray, np.ndarray]:
    """(display bucket id per distinct bucket, index of each bucket's first history column)."""
    b = sl.ts_us // disp_us
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    return b[starts], starts


def _on_grid(sl: HistorySlice, lo_bin: int, n_bins: int, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Mean liquidity, summed buy and sell volume per (display column, absolute bin)."""
    h = sl.half_bins
    w = 2 * h + 1
    n = len(sl)
    cols = (sl.anchor_bin - h - lo_bin)[:, None] + np.arange(w)[None, :]
    ok = (cols >= 0) & (cols < n_bins)
    rows = np.broadcast_to(np.arange(n)[:, None], cols.shape)
    liq = np.zeros((n, n_bins), np.float32)
    known = np.zeros((n, n_bins), np.float32)
    buy = np.zeros((n, n_bins), np.float32)
    sell = np.zeros((n, n_bins), np.float32)
    v = sl.liquidity
    good = ok & ~np.isnan(v)
    liq[rows[good], cols[good]] = v[good]
    known[rows[good], cols[good]] = 1.0
    buy[rows[ok], cols[ok]] = sl.buy[ok]
    sell[rows[ok], cols[ok]] = sl.sell[ok]
    s = np.add.reduceat(liq, starts, axis=0)
    k = np.add.reduceat(known, starts, axis=0)
    mean = np.where(k > 0, s / np.maximum(k, 1.0), 0.0)
    return mean, np.add.reduceat(buy, starts, axis=0), np.add.reduceat(sell, starts, axis=0)


def _last(a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    ends = np.r_[starts[1:], a.size] - 1
    return a[ends]


def _bubbles(vol: np.ndarray, x_ms: np.ndarray, lo_bin: int, bin_size: float, vref: float,
             digits: int, vmin: float = 0.0) -> dict[str, list[Any]]:
    """Bubbles of the cells that traded at least ``vmin`` (and more than 0)."""
    r, c = np.nonzero((vol > 0) & (vol >= vmin))
    v = vol[r, c].astype(np.float64)
    size = np.clip(BUBBLE_MAX_PX * np.sqrt(v / vref), BUBBLE_MIN_PX, BUBBLE_MAX_PX).round().astype(int)
    y = (lo_bin + c + 0.5) * bin_size
    return {"x": x_ms[r].round().tolist(), "y": np.round(y, digits).tolist(), "s": size.tolist(),
            "v": np.round(v, 6).tolist()}


# ---- candles ------------------------------------------------------------------------------------------


def resample_candles(candles: tuple[Any, ...] | list[Any], timeframe: str, start_us: int,
                     end_us: int) -> dict[str, list[float]]:
    """Closed engine candles (``CandleFeatures``) regrouped to ``timeframe`` (a multiple of theirs), the groups
    that overlap [start_us, end_us): group centre ``x`` (epoch ms) and open time ``t`` (epoch s), OHLC,
    volume and taker buy volume (summed), OFI at the best level (summed), and CVD since start, VWAP and its
    bands at each group's last candle (None where unknown)."""
    tf = timeframe_us(timeframe)
    out: dict[str, list[Any]] = {k: [] for k in ("x", "t", "open", "high", "low", "close", "volume", "buy_volume",
                                                 "ofi", "cvd", "vwap", "u1", "l1", "u2", "l2")}
    group: list[Any] = []
    key = None

    def finite(v: float) -> float | None:
        return v if math.isfinite(v) else None

    def emit() -> None:
        first, last = group[0], group[-1]
        highs = [c.high for c in group if math.isfinite(c.high)]
        lows = [c.low for c in group if math.isfinite(c.low)]
        if not highs or not math.isfinite(first.open):
            return
        out["x"].append((key * tf + tf / 2) / 1000.0)  # type: ignore[operator]
        out["t"].append(key * tf / 1e6)  # type: ignore[operator]
        out["open"].append(first.open)
        out["high"].append(max(highs))
        out["low"].append(min(lows))
        out["close"].append(last.close)
        out["volume"].append(round(sum(c.volume for c in group if math.isfinite(c.volume)), 8))
        out["buy_volume"].append(round(sum(c.buy_volume for c in group if math.isfinite(c.buy_volume)), 8))
        out["ofi"].append(round(sum(c.ofi for c in group if math.isfinite(c.ofi)), 6))
        out["cvd"].append(finite(round(last.cvd_total, 6)))
        for name, attr in (("vwap", "vwap"), ("u1", "vwap_upper_1"), ("l1", "vwap_lower_1"),
                           ("u2", "vwap_upper_2"), ("l2", "vwap_lower_2")):
            out[name].append(finite(getattr(last, attr)))

    for c in candles:
        k = c.open_time_us // tf
        if not (k * tf < end_us and (k + 1) * tf > start_us):  # groups overlapping the range
            continue
        if key is not None and k != key:
            emit()
            group = []
        key = k
        group.append(c)
    if group:
        emit()
    return out


# ---- walls and signals ------------------------------------------------------------------------------------


def _age(us: int) -> str:
    s = max(0, int(us // 1_000_000))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def walls_data(walls: list[Any], now_us: int, digits: int) -> dict[str, dict[str, list[Any]]]:
    """Line segments (x, y with None gaps, hover text) for ended and active walls, and labels at active
    walls' right ends naming side, size and age (event time)."""
    ended: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
    active: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
    labels: dict[str, list[Any]] = {"x": [], "y": [], "text": []}
    for w in walls:
        y = round((w.low + w.high) / 2.0, digits)
        t0 = w.first_seen_us / 1000.0
        if w.ended_us >= 0:
            text = (f"{w.side} wall {w.low:g}-{w.high:g}, peak {w.peak_size:.3g}, lived "
                    f"{_age(w.ended_us - w.first_seen_us)}, {w.end_reason}")
            ended["x"] += [t0, w.ended_us / 1000.0, None]
            ended["y"] += [y, y, None]
            ended["text"] += [text, text, None]
        else:
            text = f"{w.side} wall {w.size:.3g} · {_age(now_us - w.first_seen_us)}"
            active["x"] += [t0, now_us / 1000.0, None]
            active["y"] += [y, y, None]
            active["text"] += [text, text, None]
            labels["x"].append(now_us / 1000.0)
            labels["y"].append(y)
            labels["text"].append(text)
    return {"walls_ended": ended, "walls": active, "wall_labels": labels}


def signals_data(signals: list[Any], digits: int) -> dict[str, dict[str, list[Any]]]:
    ab: dict[str, list[Any]] = {"x": [], "y": [], "text": [], "marker.symbol": [], "marker.color": []}
    ex: dict[str, list[Any]] = {"x": [], "y": [], "text": [], "marker.symbol": [], "marker.color": []}
    for s in signals:
        if hasattr(s, "absorbed_volume"):
            bull = s.direction == "bull"
            ab["x"].append(s.ts_us / 1000.0)
            ab["y"].append(round(s.wall_price, digits))
            ab["text"].append(f"{'bullish' if bull else 'bearish'} absorption: {s.absorbed_volume:.3g} into "
                              f"wall {s.wall_peak_size:.3g} at {s.wall_price:g}")
            ab["marker.symbol"].append("triangle-up" if bull else "triangle-down")
            ab["marker.color"].append(BUY if bull else SELL)
        else:
            up = s.direction == "up"
            ex["x"].append(s.ts_us / 1000.0)
            ex["y"].append(round(s.price, digits))
            ex["text"].append(f"{'buying' if up else 'selling'} exhaustion at {s.price:g} (CVD {s.cvd:.3g} vs "
                              f"{s.prior_cvd:.3g})")
            ex["marker.symbol"].append("diamond")
            ex["marker.color"].append("#ffd24d" if up else "#b388ff")
    return {"absorption": ab, "exhaustion": ex}


def _bar_s(ts_us: int, tf_us: int) -> float:
    """Open time (epoch s) of the ``tf_us`` bar holding ``ts_us``: markers must sit on a bar's time."""
    return (ts_us // tf_us) * tf_us / 1e6


def technical_data(hist: PairHistory, timeframe: str, start_us: int, end_us: int, now_us: int, *,
                   bot_trades: Any = ()) -> dict[str, Any]:
    """The Lightweight Charts payload over [start_us, end_us) (see the module docstring). Times are epoch
    seconds of bar opens; ``series`` holds one column per field (the browser zips them into points), ``walls``
    the active walls (price, side, size, first seen), ``markers`` absorption, exhaustion and ``bot_trades``
    (``BotTrade`` records: the strategy's entries and exits), each on the bar it happened in."""
    tf = timeframe_us(timeframe)
    c = resample_candles(hist.candles, timeframe, start_us, end_us)
    digits = price_digits(hist.bin_size)
    series = {k: c[k] for k in ("t", "open", "high", "low", "close", "volume", "buy_volume", "ofi", "cvd", "vwap",
                                "u1", "l1", "u2", "l2")}
    walls = [{"price": round(w.price, digits), "side": w.side, "size": round(w.size, 6),
              "first_seen_s": w.first_seen_us / 1e6}
             for w in hist.walls(start_us, end_us) if w.ended_us < 0]
    markers: list[dict[str, Any]] = []
    for s in hist.signals(start_us, end_us):
        if hasattr(s, "absorbed_volume"):
            bull = s.direction == "bull"
            markers.append({"time": _bar_s(s.ts_us, tf), "kind": "absorption",
                            "position": "belowBar" if bull else "aboveBar",
                            "shape": "arrowUp" if bull else "arrowDown", "color": BUY if bull else SELL,
                            "text": f"absorption {s.absorbed_volume:.3g}", "price": round(s.wall_price, digits)})
        else:
            up = s.direction == "up"
            markers.append({"time": _bar_s(s.ts_us, tf), "kind": "exhaustion",
                            "position": "aboveBar" if up else "belowBar", "shape": "circle",
                            "color": "#ffd24d" if up else "#b388ff",
                            "text": f"exhaustion {'up' if up else 'down'}", "price": round(s.price, digits)})
    for t in bot_trades:
        if start_us <= t.ts_us < end_us:
            markers.append({"time": _bar_s(t.ts_us, tf), "kind": t.kind,
                            "position": "belowBar" if t.is_buy else "aboveBar",
                            "shape": "arrowUp" if t.is_buy else "arrowDown",
                            "color": "#36d0ff" if t.kind == "entry" else "#ff9d3b",
                            "text": t.label, "price": round(t.price, digits)})
    markers.sort(key=lambda m: m["time"])  # Lightweight Charts wants markers in time order
    return {"timeframe": timeframe, "tf_s": tf / 1e6, "digits": digits, "now_s": now_us / 1e6,
            "unit": hist.symbol.split("/")[0], "series": series, "walls": walls, "markers": markers}


# ---- footprint and volume profile --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageFlow:
    """What the footprint and the profiles need beyond the history: the engine's snapshot interval (``lag_us``,
    see dashboard/profile.py), ``helios.footprint``'s ratio and minimum volume, ``helios.volume_profile``'s
    value area."""

    lag_us: int = 500_000
    imbalance_ratio: float = 3.0
    imbalance_volume: float = 1.0
    value_area_pct: float = 70.0
    value_area_step: int = 2

    @classmethod
    def from_settings(cls, settings: HeliosSettings) -> PageFlow:
        return cls(settings.heatmap.snapshot_interval_ms * 1000, settings.footprint.imbalance_ratio,
                   settings.footprint.imbalance_volume, settings.volume_profile.value_area_pct,
                   settings.volume_profile.value_area_step)


_FLOW = PageFlow()


def _sig7(a: np.ndarray) -> list[float]:
    """Volumes to the 7 significant digits the heatmap's float32 columns hold (0.9 stays 0.9, not 0.89999998)."""
    return [float(f"{v:.7g}") for v in a.tolist()]


def _volume_text(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}"


def footprint_data(fp: Footprint, tf_us: int, bin_size: float, digits: int) -> dict[str, dict[str, list[Any]]]:
    """The footprint traces: per cell at (candle centre ms, bin centre price) the text "bid x ask" and
    ``customdata`` [bid, ask] (base units); the bid and ask imbalance cells as markers (Freqtrade's rule flags
    the lower bin p of the pair p, p + 1 for both)."""
    x = np.round((fp.open_us + tf_us / 2) / 1000.0).tolist()
    y = np.round((fp.bin + 0.5) * bin_size, digits).tolist()
    bid = _sig7(fp.bid)
    ask = _sig7(fp.ask)
    text = [f"{_volume_text(b)}×{_volume_text(a)}" for b, a in zip(bid, ask, strict=True)]
    out: dict[str, dict[str, list[Any]]] = {
        "footprint": {"x": x, "y": y, "text": text, "customdata": [[b, a] for b, a in zip(bid, ask, strict=True)]},
    }
    for name, flags in (("bid_imbalance", fp.bid_imbalance), ("ask_imbalance", fp.ask_imbalance)):
        i = np.flatnonzero(flags)
        out[name] = {"x": [x[k] for k in i.tolist()], "y": [y[k] for k in i.tolist()]}
    return out


def _levels_trace(lv: ProfileLevels | None, digits: int, tag: str) -> dict[str, list[Any]]:
    """POC, VAH and VAL as lines across the profiles' width, labelled at their left end."""
    if lv is None or not math.isfinite(lv.poc):
        return {"x": [], "y": [], "text": []}
    x: list[Any] = []
    y: list[Any] = []
    text: list[Any] = []
    for name, v in (("POC", lv.poc), ("VAH", lv.vah), ("VAL", lv.val)):
        p = round(v, digits)
        x += [0.0, 1.0, None]
        y += [p, p, None]
        text += ["", f"{tag}{name} {p:.{digits}f}", None]
    return {"x": x, "y": y, "text": text}


def session_data(session: tuple[int, int, ProfileLevels] | None, digits: int) -> dict[str, dict[str, Any]]:
    """The session profile's bars (volume / largest bin) and its POC/VAH/VAL lines."""
    if session is None:
        return {"profile_session": {"x": [], "y": [], "customdata": [], "name": "session profile"},
                "session_levels": _levels_trace(None, digits, "s")}
    start_us, since_us, lv = session
    top = float(lv.volume.max()) if lv.volume.size else 0.0
    keep = np.flatnonzero(lv.volume > 0)
    # The page's history may start after the session did (the accumulator starts at its oldest column).
    since = f" since {_hms(since_us)}" if since_us > start_us + 60_000_000 else ""
    return {
        "profile_session": {
            "x": np.round(lv.volume[keep] / top, 5).tolist() if top > 0 else [],
            "y": np.round((lv.first_bin + keep + 0.5) * lv.bin_size, digits).tolist(),
            "customdata": _sig7(lv.volume[keep]),
            "name": f"session profile ({_day(start_us)}{since})",
        },
        "session_levels": _levels_trace(lv, digits, "s"),
    }


def _hms(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%H:%M")


def _day(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---- the figure ------------------------------------------------------------------------------------------


#: Plot-area margins, px. The right one equals the Lightweight Charts price scale's width (assets/live.js
#: LW_SCALE_PX) and the left one is 0 in both, so the heatmap's time axis lies exactly over the candles'.
MARGIN_L = 0
MARGIN_R = 80


def _layout(title: str, uirevision: str) -> dict[str, Any]:
    axis = {"gridcolor": GRID, "zeroline": False, "color": TEXT, "showspikes": True, "spikecolor": "#555",
            "spikethickness": 1, "spikemode": "across"}
    return {
        "paper_bgcolor": BG, "plot_bgcolor": PANEL, "font": {"color": TEXT, "size": 11},
        "margin": {"l": MARGIN_L, "r": MARGIN_R, "t": 34, "b": 24},
        "title": {"text": title, "x": 0.01, "font": {"size": 13}},
        "uirevision": uirevision, "showlegend": True, "hovermode": "closest", "dragmode": "zoom",
        "legend": {"orientation": "h", "x": 0.3, "y": 1.0, "yanchor": "bottom", "xanchor": "left",
                   "bgcolor": "rgba(0,0,0,0)", "font": {"size": 10}, "itemsizing": "constant"},
        # The time labels are never measured by Plotly: with its defaults ("auto" angle, labels past the page's
        # edge hidden) every redraw measures each label, and Plotly caches each measurement under the label's
        # text and pixel position, which change with every live push (up to 10,000 entries, ~4 MB of the page's
        # heap). assets/live.js hides labels cut by the page's edge instead (heliosClipTimeLabels).
        "xaxis": {**axis, "type": "date", "tickangle": 0, "ticklabeloverflow": "allow"},
        "yaxis": {**axis, "side": "right", "title": {"text": "price"}, "automargin": False},
        # The volume profiles: volume / its largest bin, growing leftwards from the heatmap's right edge.
        "xaxis2": {"overlaying": "x", "side": "top", "range": [1.0 / PROFILE_WIDTH, 0.0], "fixedrange": True,
                   "visible": False},
        "barmode": "overlay",
    }


def empty_figure(message: str, uirevision: str = "empty") -> dict[str, Any]:
    lay = _layout("", uirevision)
    lay["annotations"] = [{"text": message, "x": 0.5, "y": 0.7, "xref": "paper", "yref": "paper", "showarrow": False,
                           "font": {"size": 16, "color": TEXT}}]
    return {"data": [], "layout": lay}


def build_figure(hist: PairHistory, start_us: int | None, end_us: int | None, scale: str, timeframe: str,
                 max_columns: int, *, final: bool, title: str = "", max_bubbles: int = 1500,
                 colors: str = "bookmap", views: tuple[str, ...] | list[str] = DEFAULT_VIEWS,
                 flow: PageFlow | None = None, session: tuple[int, int, ProfileLevels] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figure of ``hist`` over [start_us, end_us) and its ``meta`` (see the module docstring).

    ``final``: no more history will arrive (a finished replay): the newest display column is complete.
    Otherwise the newest display column is left out until complete, and ``build_update`` appends it.
    ``colors``: the colour ramp (``scaling.RAMPS``); ``views``: which of ``VIEWS`` are shown (the footprint
    and profile traces are always sent: the browser sums the visible-range profile from the footprint cells);
    ``flow``: footprint and value-area settings; ``session``: the session profile
    (``profile.SessionProfiles.profile``)."""
    pair = f"{hist.exchange} {hist.symbol}"
    sl = hist.slice(start_us, end_us)
    if len(sl) == 0:
        return empty_figure(f"{pair}: waiting for book data …", pair), {"pair": pair, "empty": True}
    k = max(1, math.ceil(len(sl) / max_columns))
    disp_us = sl.column_us * k
    bucket, starts = _buckets(sl, disp_us)
    if not final and len(bucket) > 1 and (bucket[-1] + 1) * disp_us > hist.complete_until_us():
        keep = starts[-1]  # the newest display column is still filling
        sl = _head(sl, keep)
        bucket, starts = bucket[:-1], starts[:-1]
    h = sl.half_bins
    margin = 0 if final else max(2, h // 4)  # room for the mid to drift before a live figure is redrawn
    lo_bin = int(sl.anchor_bin.min()) - h - margin
    hi_bin = int(sl.anchor_bin.max()) + h + margin
    n_bins = hi_bin - lo_bin + 1
    liq, buy, sell = _on_grid(sl, lo_bin, n_bins, starts)
    thr = scaling.thresholds(liq, scale)
    z = scaling.levels(liq, thr)
    x_ms = (bucket * disp_us + disp_us / 2) / 1000.0
    digits = price_digits(sl.bin_size)
    vols = np.concatenate((buy[buy > 0], sell[sell > 0]))
    vref = float(np.quantile(vols, 0.995)) if vols.size else 1.0
    # Volume filter (as Bookmap's): at most ``max_bubbles`` bubbles, the largest; live appends use the same
    # minimum so the picture stays consistent. Each SVG bubble costs the browser ~0.06 ms to draw.
    vmin = float(np.partition(vols, vols.size - max_bubbles)[vols.size - max_bubbles]) if vols.size > max_bubbles \
        else 0.0
    b_buy = _bubbles(buy, x_ms, lo_bin, sl.bin_size, vref, digits, vmin)
    b_sell = _bubbles(sell, x_ms, lo_bin, sl.bin_size, vref, digits, vmin)
    bid = _last(sl.best_bid, starts)
    ask = _last(sl.best_ask, starts)
    t_end = int((bucket[-1] + 1) * disp_us)
    t_start = int(bucket[0] * disp_us)
    now_us = hist.last_ts_us
    walls = walls_data(hist.walls(t_start, t_end), now_us if not final else min(now_us, t_end), digits)
    sigs = signals_data(hist.signals(t_start, t_end), digits)
    unit = hist.symbol.split("/")[0]
    tickvals, ticktext = scaling.colorbar_ticks(thr, unit)
    xs = [round(v) for v in x_ms.tolist()]
    y0 = (lo_bin + 0.5) * sl.bin_size

    fig: dict[str, Any] = {"data": [], "layout": _layout(
        title or f"{hist.symbol} · {hist.exchange} — liquidity ({scale} scale)", pair)}
    fig["data"].append(_trace("heatmap",
        x=xs, z=typed_array(z), transpose=True, y0=y0, dy=sl.bin_size, zmin=0, zmax=255, zsmooth=False,
        colorscale=scaling.colorscale(scale, colors), name="resting liquidity", showscale=True, xaxis="x", yaxis="y",
        colorbar={"tickvals": tickvals, "ticktext": ticktext, "len": 0.5, "y": 1.0, "yanchor": "top",
                  "thickness": 10, "x": 0.0, "xanchor": "left", "xpad": 2, "tickfont": {"size": 9},
                  "bgcolor": "rgba(18,18,18,0.6)"},
        hovertemplate="%{y:." + str(digits) + "f}<br>%{x}<br>level %{z}<extra>liquidity</extra>",
    ))
    for name, b, color in (("taker buys", b_buy, BUY), ("taker sells", b_sell, SELL)):
        fig["data"].append(_trace("scatter",
            x=b["x"], y=b["y"], customdata=b["v"], name=name, mode="markers", xaxis="x", yaxis="y",
            marker={"size": b["s"], "color": color, "opacity": 0.6, "line": {"width": 0},
                    "sizemode": "diameter"},
            hovertemplate="%{customdata} @ %{y}<br>%{x}<extra>" + name + "</extra>",
        ))
    line = {"width": 1.6, "shape": "hv"}
    fig["data"].append(_trace("scatter", x=xs, y=_rounded(bid, digits), name="best bid", mode="lines",
                             line={**line, "color": BID_LINE}, xaxis="x", yaxis="y"))
    fig["data"].append(_trace("scatter", x=xs, y=_rounded(ask, digits), name="best ask", mode="lines",
                             line={**line, "color": ASK_LINE}, xaxis="x", yaxis="y"))
    fig["data"].append(_trace("scatter", **walls["walls_ended"], name="ended walls", mode="lines",
                             hovertemplate="%{text}<extra></extra>",
                             line={"color": "rgba(255,255,255,0.7)", "width": 1.5, "dash": "dot"},
                             xaxis="x", yaxis="y"))
    fig["data"].append(_trace("scatter", **walls["walls"], name="walls", mode="lines",
                             hovertemplate="%{text}<extra></extra>",
                             line={"color": "rgba(255,255,255,0.9)", "width": 1.5, "dash": "dash"},
                             xaxis="x", yaxis="y"))
    fig["data"].append(_trace("scatter", **walls["wall_labels"], name="wall labels", mode="markers+text",
                             showlegend=False, textposition="middle left", textfont={"size": 10, "color": "#ffffff"},
                             marker={"symbol": "line-ns", "size": 10, "line": {"width": 2, "color": "#ffffff"}},
                             hovertemplate="%{text}<extra></extra>", xaxis="x", yaxis="y"))
    for name in ("absorption", "exhaustion"):
        d = sigs[name]
        fig["data"].append(_trace("scatter",
            x=d["x"], y=d["y"], text=d["text"], name=name, mode="markers", xaxis="x", yaxis="y",
            marker={"symbol": d["marker.symbol"], "color": d["marker.color"], "size": 13,
                    "line": {"width": 1.5, "color": "#ffffff"}},
            hovertemplate="%{text}<br>%{x}<extra></extra>",
        ))
    flow = flow or PageFlow()
    tf_us = timeframe_us(timeframe)
    fp = footprint_cells(_whole_candles(hist, sl, tf_us, flow.lag_us, t_end), tf_us, flow.lag_us,
                         imbalance_ratio=flow.imbalance_ratio, imbalance_volume=flow.imbalance_volume)
    _add_flow_traces(fig, footprint_data(fp, tf_us, sl.bin_size, digits), session_data(session, digits),
                     sl.bin_size, digits, views)
    meta = {
        "pair": pair, "empty": False, "scale": scale, "timeframe": timeframe, "disp_us": disp_us,
        "lo_bin": lo_bin, "n_bins": n_bins, "bin_size": sl.bin_size, "half_bins": h, "digits": digits,
        "thr": [float(f"{t:.6g}") for t in thr], "vref": vref, "vmin": vmin, "seq": sl.seq, "n_cols": len(xs),
        "last_bucket": int(bucket[-1]), "start_us": t_start, "end_us": t_end,
        "max_columns": max_columns, "trace": TRACE, "colors": colors, "views": list(views), "tf_us": tf_us,
        "lag_us": flow.lag_us, "imbalance_ratio": flow.imbalance_ratio, "imbalance_volume": flow.imbalance_volume,
        "va_pct": flow.value_area_pct, "va_step": flow.value_area_step, "profile_width": PROFILE_WIDTH,
    }
    return fig, meta


def _whole_candles(hist: PairHistory, sl: HistorySlice, tf_us: int, lag_us: int, end_us: int) -> HistorySlice:
    """The history's columns of every candle ``sl``'s columns fall in, up to ``end_us``: a footprint candle is
    summed whole even when the figure starts inside it (dashboard/profile.py dates a column's volume)."""
    first_candle = (int(sl.ts_us[0]) + sl.column_us - lag_us - 1) // tf_us
    return hist.slice(first_candle * tf_us - sl.column_us + lag_us + 1, end_us)


def _add_flow_traces(fig: dict[str, Any], fp: dict[str, dict[str, list[Any]]], sd: dict[str, dict[str, Any]],
                     bin_size: float, digits: int, views: tuple[str, ...] | list[str]) -> None:
    """The footprint (text and imbalance markers, on the heatmap's axes) and the two volume profiles with their
    POC/VAH/VAL lines (on ``xaxis2``, from the right edge). The visible-range profile is left empty here:
    assets/live.js sums it from the footprint cells of the candles on screen, after every zoom, pan and push."""
    show_fp = "footprint" in views
    show_vp = "profile" in views
    y = "%{y:." + str(digits) + "f}"
    fig["data"].append(_trace("scatter", **fp["footprint"], name="footprint (bid × ask)", mode="text",
                              textfont={"size": 9, "color": "#e6e6e6"}, visible=show_fp, xaxis="x", yaxis="y",
                              hovertemplate="bid %{customdata[0]} × ask %{customdata[1]} @ " + y +
                                            "<br>%{x}<extra>footprint</extra>"))
    for name, color in (("bid_imbalance", SELL), ("ask_imbalance", BUY)):
        fig["data"].append(_trace("scatter", **fp[name], name=name.replace("_", " "), mode="markers",
                                  showlegend=False, visible=show_fp, xaxis="x", yaxis="y", hoverinfo="skip",
                                  marker={"symbol": "square-open", "size": 15, "color": color,
                                          "line": {"width": 2, "color": color}}))
    bar = {"orientation": "h", "xaxis": "x2", "yaxis": "y", "width": bin_size, "visible": show_vp}
    fig["data"].append(_trace("bar", **sd["profile_session"], **bar,
                              marker={"color": "rgba(54,208,255,0.12)", "line": {"width": 1.5, "color": "#36d0ff"}},
                              hovertemplate="%{customdata} @ " + y + "<extra>session</extra>"))
    fig["data"].append(_trace("bar", x=[], y=[], customdata=[], name="visible-range profile", **bar,
                              marker={"color": [], "line": {"width": 0.5, "color": "rgba(0,0,0,0.6)"}},
                              hovertemplate="%{customdata} @ " + y + "<extra>visible range</extra>"))
    lines = {"mode": "lines+text", "textposition": "middle left", "xaxis": "x2", "yaxis": "y", "showlegend": False,
             "visible": show_vp, "hoverinfo": "skip"}
    fig["data"].append(_trace("scatter", **sd["session_levels"], name="session POC/VA", **lines,
                              line={"color": "#36d0ff", "width": 1.2, "dash": "dot"},
                              textfont={"size": 10, "color": "#36d0ff"}))
    fig["data"].append(_trace("scatter", x=[], y=[], text=[], name="visible POC/VA", **lines,
                              line={"color": "#ffb000", "width": 1.2}, textfont={"size": 10, "color": "#ffb000"}))


def _head(sl: HistorySlice, n: int) -> HistorySlice:
    """The first ``n`` columns of a slice."""
    n = int(n)  # a NumPy index would make ``seq`` an int64, which the push socket's json.dumps rejects
    cut = slice(0, n)
    seq = sl.seq - (len(sl) - n)
    return HistorySlice(sl.bin_size, sl.half_bins, sl.column_us, seq, sl.ts_us[cut], sl.anchor_bin[cut],
                        sl.liquidity[cut], sl.buy[cut], sl.sell[cut], sl.best_bid[cut], sl.best_ask[cut],
                        sl.cvd[cut], sl.ofi[cut])


def build_update(hist: PairHistory, meta: dict[str, Any], *, final: bool,
                 session: tuple[int, int, ProfileLevels] | None = None) -> tuple[str, dict[str, Any] | None]:
    """What to send the browser for a figure built with ``meta``: ("none", None) when nothing is new,
    ("redraw", None) when the new columns do not fit the figure's price grid (the page rebuilds it), or
    ("append", update) with the new complete display columns and the replaced walls/signals/candles/session
    profile (applied by assets/live.js; ``update["meta"]`` is the figure's new meta). ``update["footprint"]``
    holds the footprint cells of every candle from the one the first new column falls in (``from_x``, its
    centre, epoch ms): the page replaces its cells from there on and drops those of candles before
    ``trim_x`` (left of the figure's sliding window)."""
    sl = hist.slice(after_seq=meta["seq"])
    if len(sl) == 0:
        return "none", None
    if sl.seq - len(sl) + 1 > meta["seq"] + 1:
        return "redraw", None  # the ring dropped columns the browser never got: appending would leave a gap
    disp_us = meta["disp_us"]
    bucket, starts = _buckets(sl, disp_us)
    if not final and (bucket[-1] + 1) * disp_us > hist.complete_until_us():
        if len(bucket) == 1:
            return "none", None
        sl = _head(sl, starts[-1])
        bucket, starts = bucket[:-1], starts[:-1]
    if bucket[0] <= meta["last_bucket"]:
        return "redraw", None  # history was rebuilt under us (cannot append in place)
    h = sl.half_bins
    lo_bin, n_bins = meta["lo_bin"], meta["n_bins"]
    if sl.anchor_bin.min() - h < lo_bin or sl.anchor_bin.max() + h > lo_bin + n_bins - 1:
        return "redraw", None
    liq, buy, sell = _on_grid(sl, lo_bin, n_bins, starts)
    thr = np.asarray(meta["thr"])
    z = scaling.levels(liq, thr)
    x_ms = (bucket * disp_us + disp_us / 2) / 1000.0
    xs = [round(v) for v in x_ms.tolist()]
    digits = meta["digits"]
    t_start = int(meta["start_us"])
    n_cols = int(meta["n_cols"])
    keep = int(meta["max_columns"])
    new_n = min(keep, n_cols + len(xs))
    # The figure keeps a sliding window of ``keep`` columns: its left edge moves with what gets trimmed.
    t_start = max(t_start, int((bucket[-1] + 1 - new_n) * disp_us))
    t_end = int((bucket[-1] + 1) * disp_us)
    now_us = hist.last_ts_us
    replace: dict[str, dict[str, list[Any]]] = {}
    replace.update(walls_data(hist.walls(t_start, t_end), now_us, digits))
    replace.update(signals_data(hist.signals(t_start, t_end), digits))
    replace.update(session_data(session, digits))
    tf_us = int(meta.get("tf_us") or timeframe_us(meta["timeframe"]))
    lag = int(meta.get("lag_us", _FLOW.lag_us))
    fsl = _whole_candles(hist, sl, tf_us, lag, t_end)
    first_candle = (int(sl.ts_us[0]) + sl.column_us - lag - 1) // tf_us
    fp = footprint_cells(fsl, tf_us, lag, imbalance_ratio=float(meta.get("imbalance_ratio", _FLOW.imbalance_ratio)),
                         imbalance_volume=float(meta.get("imbalance_volume", _FLOW.imbalance_volume)))
    footprint: dict[str, Any] = footprint_data(fp, tf_us, sl.bin_size, digits)
    footprint["from_x"] = (first_candle * tf_us + tf_us / 2) / 1000.0
    footprint["trim_x"] = ((t_start // tf_us) * tf_us + tf_us / 2) / 1000.0
    vref = meta["vref"]
    upd = {
        "keep": keep, "bubble_cap": BUBBLE_CAP, "trace": TRACE,
        "heat": {"x": xs, "z": z.tolist()},
        "lines": {
            "best_bid": _rounded(_last(sl.best_bid, starts), digits),
            "best_ask": _rounded(_last(sl.best_ask, starts), digits),
        },
        "buys": _bubbles(buy, x_ms, lo_bin, sl.bin_size, vref, digits, meta["vmin"]),
        "sells": _bubbles(sell, x_ms, lo_bin, sl.bin_size, vref, digits, meta["vmin"]),
        "replace": replace,
        "footprint": footprint,
    }
    new_meta = dict(meta)
    new_meta.update(seq=sl.seq, n_cols=new_n, last_bucket=int(bucket[-1]), start_us=t_start, end_us=t_end)
    upd["meta"] = new_meta
    return "append", upd
