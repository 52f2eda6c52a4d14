"""The liquidity page: payload of one full figure update and the server-side time to build it.

The acceptance case: one hour of 400-bin heatmap columns (1 s history columns, 3600 of them) with 10,000
trades (``dashboard.synthetic``), drawn at the default 480 display columns. ``dashboard_payload_kb`` is the
Dash response body gzip-compressed (what travels with ``compress=True``; limit 300 KB), ``_raw_kb`` before
compression; ``dashboard_figure_build_ms`` is the median build + JSON encoding time; ``dashboard_history_mb``
the memory one pair's history holds at those settings (fixed at construction). Browser render time is
measured by tests/test_dashboard_browser.py (tests/artifacts/dashboard_perf.json).
"""

from __future__ import annotations

import gzip
import statistics
import time

from plotly.io.json import to_json_plotly


def run(quick: bool) -> dict[str, float | int | str]:
    from dashboard import figures
    from dashboard.settings import DashboardSettings
    from dashboard.synthetic import synthetic_history

    s = DashboardSettings()
    hist = synthetic_history(3600, 200, 10_000)
    times = []
    body = ""
    for _ in range(2 if quick else 5):
        t0 = time.perf_counter()
        fig, meta = figures.build_figure(hist, None, None, "percentile", "1m", s.max_display_columns, final=True,
                                         max_bubbles=s.max_bubbles)
        body = to_json_plotly({"multi": True, "response": {"graph": {"figure": fig}, "meta": {"data": meta}}})
        times.append((time.perf_counter() - t0) * 1000)
    mem = hist.columns.nbytes
    return {
        "dashboard_payload_kb": round(len(gzip.compress(body.encode(), 6)) / 1000, 1),
        "dashboard_payload_raw_kb": round(len(body) / 1000, 1),
        "dashboard_figure_build_ms": round(statistics.median(times), 1),
        "dashboard_history_mb": round(mem / 1e6, 1),
    }
