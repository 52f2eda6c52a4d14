"""The liquidity figure: heatmap, best bid/ask, trade bubbles, walls, signals, candles + VWAP, CVD, OFI.

``build_figure`` draws a time range of a ``PairHistory`` as one Plotly figure with four rows sharing the time
axis: (1) the liquidity heatmap with best bid/ask lines, trade bubbles, walls and signals, (2) candlesticks
with the session VWAP and its 1 and 2 sigma bands, (3) CVD, (4) OFI per time column. It returns the figure
and a JSON-able ``meta`` dict that ``build_update`` needs to append newer columns to the same figure in the
browser (``assets/live.js`` applies them without redrawing from scratch, so pan and zoom stay).

Wire size: the heatmap is sent as one uint8 colour level per cell (base64 typed array: 1 byte per cell
before compression), on a fixed absolute price grid; times are epoch milliseconds on a date axis.
Everything the browser appends to is a plain JSON list (Plotly can only extend plain arrays).
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from helios_orderflow.engine.candles import timeframe_us

from . import scaling
from .history import HistorySlice, PairHistory

#: Trace indices (assets/live.js and build_update rely on them).
TRACE = {
    "heatmap": 0, "buys": 1, "sells": 2, "best_bid": 3, "best_ask": 4, "walls_ended": 5, "walls": 6,
    "wall_labels": 7, "absorption": 8, "exhaustion": 9, "candles": 10, "vwap": 11, "vwap_u1": 12,
    "vwap_l1": 13, "vwap_u2": 14, "vwap_l2": 15, "cvd": 16, "ofi_pos": 17, "ofi_neg": 18,
}
APPEND_LINES = ("best_bid", "best_ask", "cvd", "ofi_pos", "ofi_neg")
BG = "#05070c"
PANEL = "#000000"
GRID = "#1b2130"
TEXT = "#c9d1d9"
BUY = "#21e07a"
SELL = "#ff4d5e"
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
    that overlap [start_us, end_us): OHLC, and VWAP with its bands at each group's last candle."""
    tf = timeframe_us(timeframe)
    out: dict[str, list[float]] = {k: [] for k in ("x", "open", "high", "low", "close", "vwap", "u1", "l1",
                                                   "u2", "l2")}
    group: list[Any] = []
    key = None

    def emit() -> None:
        first, last = group[0], group[-1]
        highs = [c.high for c in group if math.isfinite(c.high)]
        lows = [c.low for c in group if math.isfinite(c.low)]
        if not highs or not math.isfinite(first.open):
            return
        out["x"].append((key * tf + tf / 2) / 1000.0)  # type: ignore[operator]
        out["open"].append(first.open)
        out["high"].append(max(highs))
        out["low"].append(min(lows))
        out["close"].append(last.close)
        for name, attr in (("vwap", "vwap"), ("u1", "vwap_upper_1"), ("l1", "vwap_lower_1"),
                           ("u2", "vwap_upper_2"), ("l2", "vwap_lower_2")):
            val = getattr(last, attr)
            out[name].append(val if math.isfinite(val) else None)  # type: ignore[arg-type]

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


def _candle_traces(c: dict[str, list[float]]) -> dict[str, dict[str, list[Any]]]:
    return {
        "candles": {"x": c["x"], "open": c["open"], "high": c["high"], "low": c["low"], "close": c["close"]},
        "vwap": {"x": c["x"], "y": c["vwap"]},
        "vwap_u1": {"x": c["x"], "y": c["u1"]}, "vwap_l1": {"x": c["x"], "y": c["l1"]},
        "vwap_u2": {"x": c["x"], "y": c["u2"]}, "vwap_l2": {"x": c["x"], "y": c["l2"]},
    }


# ---- the figure ------------------------------------------------------------------------------------------


def _layout(title: str, uirevision: str) -> dict[str, Any]:
    axis = {"gridcolor": GRID, "zeroline": False, "color": TEXT, "showspikes": True, "spikecolor": "#555",
            "spikethickness": 1, "spikemode": "across"}
    lay: dict[str, Any] = {
        "paper_bgcolor": BG, "plot_bgcolor": PANEL, "font": {"color": TEXT, "size": 11},
        "margin": {"l": 70, "r": 20, "t": 34, "b": 30},
        "title": {"text": title, "x": 0.01, "font": {"size": 13}},
        "uirevision": uirevision, "showlegend": True, "hovermode": "closest", "dragmode": "zoom",
        "legend": {"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom", "xanchor": "left",
                   "bgcolor": "rgba(0,0,0,0)", "font": {"size": 10}, "itemsizing": "constant"},
        "bargap": 0.0,
    }
    domains = [(0.44, 1.0), (0.23, 0.425), (0.115, 0.215), (0.0, 0.105)]
    for i, (lo, hi) in enumerate(domains, start=1):
        sfx = "" if i == 1 else str(i)
        lay[f"yaxis{sfx}"] = {**axis, "domain": [lo, hi], "anchor": f"x{sfx}", "side": "right" if i > 1 else "left",
                              "fixedrange": i > 2}
        lay[f"xaxis{sfx}"] = {**axis, "type": "date", "anchor": f"y{sfx}", "matches": None if i == 1 else "x",
                              "showticklabels": i == 4, "rangeslider": {"visible": False}}
    lay["xaxis"].pop("matches")
    lay["yaxis"]["title"] = {"text": "price"}
    lay["yaxis2"]["title"] = {"text": "candles"}
    lay["yaxis3"]["title"] = {"text": "CVD"}
    lay["yaxis4"]["title"] = {"text": "OFI"}
    return lay


def empty_figure(message: str, uirevision: str = "empty") -> dict[str, Any]:
    lay = _layout("", uirevision)
    lay["annotations"] = [{"text": message, "x": 0.5, "y": 0.7, "xref": "paper", "yref": "paper", "showarrow": False,
                           "font": {"size": 16, "color": TEXT}}]
    return {"data": [], "layout": lay}


def build_figure(hist: PairHistory, start_us: int | None, end_us: int | None, scale: str, timeframe: str,
                 max_columns: int, *, final: bool, title: str = "", max_bubbles: int = 1500,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The figure of ``hist`` over [start_us, end_us) and its ``meta`` (see the module docstring).

    ``final``: no more history will arrive (a finished replay): the newest display column is complete.
    Otherwise the newest display column is left out until complete, and ``build_update`` appends it."""
    pair = f"{hist.exchange} {hist.symbol}"
    sl = hist.slice(start_us, end_us)
    if len(sl) == 0:
        return empty_figure(f"{pair}: waiting for book data …", pair), {"pair": pair, "empty": True}
    k = max(1, math.ceil(len(sl) / max_columns))
    disp_us = sl.column_us * k
    bucket, starts = _buckets(sl, disp_us)
    if not final and len(bucket) > 1 and (hist.last_ts_us // disp_us) == bucket[-1]:
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
    cvd = _last(sl.cvd, starts)
    ofi_last = np.nan_to_num(_last(sl.ofi, starts))
    ofi = np.diff(np.r_[np.nan_to_num(sl.ofi[0]), ofi_last])
    t_end = int((bucket[-1] + 1) * disp_us)
    t_start = int(bucket[0] * disp_us)
    now_us = hist.last_ts_us
    candles = resample_candles(hist.candles, timeframe, t_start, t_end)
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
        colorscale=scaling.colorscale(scale), name="resting liquidity", showscale=True, xaxis="x", yaxis="y",
        colorbar={"tickvals": tickvals, "ticktext": ticktext, "len": 0.5, "y": 1.0, "yanchor": "top",
                  "thickness": 10, "x": 1.0, "xpad": 2, "tickfont": {"size": 9}},
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
    ct = _candle_traces(candles)
    fig["data"].append(_trace("candlestick", **ct["candles"], name=f"candles {timeframe}", xaxis="x2", yaxis="y2",
                                 increasing={"line": {"color": BUY, "width": 1}, "fillcolor": BUY},
                                 decreasing={"line": {"color": SELL, "width": 1}, "fillcolor": SELL}))
    fig["data"].append(_trace("scatter", **ct["vwap"], name="VWAP", mode="lines",
                              line={"color": "#ffd24d", "width": 1.5}, xaxis="x2", yaxis="y2"))
    for name, label, dash in (("vwap_u1", "VWAP +1σ", "dot"), ("vwap_l1", "VWAP -1σ", "dot"),
                              ("vwap_u2", "VWAP +2σ", "dash"), ("vwap_l2", "VWAP -2σ", "dash")):
        fig["data"].append(_trace("scatter", **ct[name], name=label, mode="lines", showlegend=False,
                                 line={"color": "rgba(255,210,77,0.55)", "width": 1, "dash": dash},
                                 xaxis="x2", yaxis="y2"))
    fig["data"].append(_trace("scatter", x=xs, y=_rounded(cvd, 6), name="CVD", mode="lines",
                             line={"color": "#7fb3ff", "width": 1.3}, xaxis="x3", yaxis="y3"))
    ofi_r = np.round(ofi, 6)
    # OFI as two filled step areas (two SVG paths; bars would be one element per column).
    for name, vals, color in (("OFI +", np.maximum(ofi_r, 0), BUY), ("OFI −", np.minimum(ofi_r, 0), SELL)):
        fig["data"].append(_trace("scatter", x=xs, y=vals.tolist(), name=name, mode="lines", fill="tozeroy",
                                  line={"color": color, "width": 0.8, "shape": "hvh"}, fillcolor=color,
                                  xaxis="x4", yaxis="y4", showlegend=False))
    meta = {
        "pair": pair, "empty": False, "scale": scale, "timeframe": timeframe, "disp_us": disp_us,
        "lo_bin": lo_bin, "n_bins": n_bins, "bin_size": sl.bin_size, "half_bins": h, "digits": digits,
        "thr": [float(f"{t:.6g}") for t in thr], "vref": vref, "vmin": vmin, "seq": sl.seq, "n_cols": len(xs),
        "last_bucket": int(bucket[-1]), "ofi_last": float(ofi_last[-1]), "start_us": t_start,
        "max_columns": max_columns, "trace": TRACE,
    }
    return fig, meta


def _head(sl: HistorySlice, n: int) -> HistorySlice:
    """The first ``n`` columns of a slice."""
    cut = slice(0, n)
    seq = sl.seq - (len(sl) - n)
    return HistorySlice(sl.bin_size, sl.half_bins, sl.column_us, seq, sl.ts_us[cut], sl.anchor_bin[cut],
                        sl.liquidity[cut], sl.buy[cut], sl.sell[cut], sl.best_bid[cut], sl.best_ask[cut],
                        sl.cvd[cut], sl.ofi[cut])


def build_update(hist: PairHistory, meta: dict[str, Any], *, final: bool) -> tuple[str, dict[str, Any] | None]:
    """What to send the browser for a figure built with ``meta``: ("none", None) when nothing is new,
    ("redraw", None) when the new columns do not fit the figure's price grid (the page rebuilds it), or
    ("append", update) with the new complete display columns and the replaced walls/signals/candles
    (applied by assets/live.js; ``update["meta"]`` is the figure's new meta)."""
    sl = hist.slice(after_seq=meta["seq"])
    if len(sl) == 0:
        return "none", None
    disp_us = meta["disp_us"]
    bucket, starts = _buckets(sl, disp_us)
    if not final and (hist.last_ts_us // disp_us) == bucket[-1]:
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
    ofi_last = np.nan_to_num(_last(sl.ofi, starts))
    ofi = np.round(np.diff(np.r_[meta["ofi_last"], ofi_last]), 6)
    t_start = int(meta["start_us"])
    n_cols = int(meta["n_cols"])
    keep = int(meta["max_columns"])
    new_n = min(keep, n_cols + len(xs))
    # The figure keeps a sliding window of ``keep`` columns: its left edge moves with what gets trimmed.
    t_start = max(t_start, int((bucket[-1] + 1 - new_n) * disp_us))
    t_end = int((bucket[-1] + 1) * disp_us)
    candles = resample_candles(hist.candles, meta["timeframe"], t_start, t_end)
    now_us = hist.last_ts_us
    replace: dict[str, dict[str, list[Any]]] = {}
    replace.update(walls_data(hist.walls(t_start, t_end), now_us, digits))
    replace.update(signals_data(hist.signals(t_start, t_end), digits))
    replace.update(_candle_traces(candles))
    vref = meta["vref"]
    upd = {
        "keep": keep, "bubble_cap": BUBBLE_CAP, "trace": TRACE,
        "heat": {"x": xs, "z": z.tolist()},
        "lines": {
            "best_bid": _rounded(_last(sl.best_bid, starts), digits),
            "best_ask": _rounded(_last(sl.best_ask, starts), digits),
            "cvd": _rounded(_last(sl.cvd, starts), 6),
            "ofi_pos": np.maximum(ofi, 0).tolist(), "ofi_neg": np.minimum(ofi, 0).tolist(),
        },
        "buys": _bubbles(buy, x_ms, lo_bin, sl.bin_size, vref, digits, meta["vmin"]),
        "sells": _bubbles(sell, x_ms, lo_bin, sl.bin_size, vref, digits, meta["vmin"]),
        "replace": replace,
    }
    new_meta = dict(meta)
    new_meta.update(seq=sl.seq, n_cols=new_n, last_bucket=int(bucket[-1]), ofi_last=float(ofi_last[-1]),
                    start_us=t_start)
    upd["meta"] = new_meta
    return "append", upd
