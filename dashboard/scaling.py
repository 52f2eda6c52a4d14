"""Heatmap colour scaling: resting size -> colour level 0..255 (0 = no liquidity).

Both scales are a list of 254 ascending size thresholds; a size s > 0 gets level ``1 + #(thresholds <= s)``
- ``percentile``: the thresholds are the 1/255 .. 254/255 quantiles of the non-empty cells on screen, so each
  level holds the same share of cells and the largest resting sizes (walls) take the top, brightest
  levels whatever the absolute sizes are.
- ``log``: thresholds evenly spaced in log size between the median and the largest cell, so colour is
  proportional to log size above the typical level (one huge wall stands out, the rest of the book is dark).
The thresholds are computed once per figure and reused for appended live columns, so colours do not
shift while the page updates (a size above the top threshold stays at 255).

Colours (``helios.dashboard.heatmap_colors``, and a control on the page): ``bookmap`` (black -> blue -> cyan ->
green -> yellow -> red -> white) or the design's ``black-yellow-red``; each has a ramp for each scaling.
"""

from __future__ import annotations

import numpy as np

LEVELS = 255
#: Bookmap-like: black (empty) -> deep blue (most of the book) -> cyan -> green -> yellow -> orange -> red ->
#: white. With percentile levels the brightest colours hold only the top few percent of cells: the walls.
COLORSCALE: list[list[float | str]] = [
    [0.0, "#000000"],
    [0.004, "#01040f"],
    [0.35, "#04164a"],
    [0.7, "#0a3f9c"],
    [0.84, "#1386d6"],
    [0.91, "#17c7c9"],
    [0.95, "#3ee05a"],
    [0.975, "#f2e829"],
    [0.988, "#ff8c1a"],
    [0.996, "#ff2a1a"],
    [1.0, "#ffffff"],
]
#: For log levels: typical sizes sit low on the ramp already, so the bright colours get a wider share.
COLORSCALE_LOG: list[list[float | str]] = [
    [0.0, "#000000"],
    [0.004, "#01040f"],
    [0.3, "#062a6e"],
    [0.5, "#0a6fbf"],
    [0.62, "#17c7c9"],
    [0.72, "#3ee05a"],
    [0.82, "#f2e829"],
    [0.9, "#ff8c1a"],
    [0.96, "#ff2a1a"],
    [1.0, "#ffffff"],
]


#: The design's black-yellow-red: black (empty) -> dark amber (most of the book) -> yellow -> orange -> red (the
#: largest sizes). Percentile levels: the top few percent of cells (walls) take the red end.
COLORSCALE_BYR: list[list[float | str]] = [
    [0.0, "#000000"],
    [0.004, "#0a0700"],
    [0.4, "#2b2000"],
    [0.7, "#6b5600"],
    [0.85, "#b89a00"],
    [0.93, "#ffe14d"],
    [0.97, "#ffa31a"],
    [0.99, "#ff4d1a"],
    [1.0, "#ff0000"],
]
#: For log levels (as COLORSCALE_LOG: typical sizes sit low on the ramp, the bright colours get a wider share).
COLORSCALE_BYR_LOG: list[list[float | str]] = [
    [0.0, "#000000"],
    [0.004, "#0a0700"],
    [0.3, "#3d2f00"],
    [0.5, "#8a7200"],
    [0.65, "#e0c200"],
    [0.75, "#ffe14d"],
    [0.85, "#ffa31a"],
    [0.93, "#ff4d1a"],
    [1.0, "#ff0000"],
]
#: Colour ramps by ``helios.dashboard.heatmap_colors`` (DASHBOARD_COLORS): (percentile ramp, log ramp).
RAMPS = {"bookmap": (COLORSCALE, COLORSCALE_LOG), "black-yellow-red": (COLORSCALE_BYR, COLORSCALE_BYR_LOG)}


def colorscale(scale: str, colors: str = "bookmap") -> list[list[float | str]]:
    """The Plotly colour scale for a scaling (``percentile`` or ``log``) and a ramp (``RAMPS``)."""
    pct, log = RAMPS.get(colors, RAMPS["bookmap"])
    return log if scale == "log" else pct


def thresholds(sizes: np.ndarray, scale: str) -> np.ndarray:
    """254 ascending thresholds (float64) for the finite, positive values in ``sizes``."""
    v = sizes[np.isfinite(sizes) & (sizes > 0)].astype(np.float64)
    if v.size == 0:
        return np.geomspace(1e-9, 1.0, LEVELS - 1)
    if scale == "log":
        lo = float(np.quantile(v, 0.5))
        hi = float(v.max())
        if not hi > lo:
            hi = lo * 10.0
        return np.geomspace(lo, hi, LEVELS - 1)
    q = np.arange(1, LEVELS) / LEVELS
    return np.quantile(v, q)


def levels(sizes: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Colour levels (uint8) of ``sizes`` (any shape; NaN and <= 0 give 0)."""
    s = np.nan_to_num(sizes, nan=0.0)
    out = 1 + np.searchsorted(thr, s, side="right")
    out = np.where(s > 0, np.minimum(out, LEVELS), 0)
    return out.astype(np.uint8)


def colorbar_ticks(thr: np.ndarray, unit: str) -> tuple[list[int], list[str]]:
    """Colour-bar tick positions (levels) and labels (the sizes they stand for)."""
    vals = [1, 64, 128, 192, 255]
    text = [f"{thr[min(v - 1, thr.size - 1)]:.3g} {unit}" for v in vals]
    text[-1] = "≥ " + text[-1]
    return vals, text
