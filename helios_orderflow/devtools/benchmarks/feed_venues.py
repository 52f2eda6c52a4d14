"""The live feed's load on Binance, OKX and Bybit side by side: the same 20 synthetic pairs, with their depth,
trades and best bid/offer streams (``feed_full_*``'s load, ~36 messages/s a pair), in each venue's own protocol
through its real ``ccxt.pro`` client, one venue after the other in one run so that the figures compare.

Per venue ``V`` (``binance``, ``okx``, ``bybit``), after a 30 s warm-up, over 4 minutes (see ``feed.py`` for how
each figure is taken):

- ``feed_V_book_p50_ms`` / ``feed_V_book_p99_ms``: a book frame's receipt to the SharedState publication that
  includes it; ``feed_V_trade_p99_ms``: the same for trades;
- ``feed_V_cpu_cores``: the feed process's CPU time over wall time (the exchange runs in its own process);
- ``feed_V_rss_slope_mb_per_min`` and ``feed_V_rss_minute_peaks_growth_pct`` (the median of the last two whole
  minutes' RSS peaks against the first two): flat memory;
- ``feed_V_events_per_s`` and ``feed_V_pairs_healthy_at_end``.

What differs by venue is the wire: Binance sends each pair's diffs on its own stream, OKX and Bybit multiplex
the pairs' channels over fewer connections, and on Bybit the feed opens no best bid/offer stream (ccxt keeps one
book per symbol, see docs/venues.md), so its message rate is lower. Takes about 14 minutes.
"""

from __future__ import annotations

from helios_orderflow.devtools.benchmarks.feed import measure, peak_growth_pct, quantile

VENUES = ("binance", "okx", "bybit")
WARM_UP_S, MEASURE_S = 30.0, 240.0


def run(quick: bool = False) -> dict[str, float | int | str]:
    warmup_s, measure_s = (10.0, 30.0) if quick else (WARM_UP_S, MEASURE_S)
    out: dict[str, float | int | str] = {"feed_venues_measure_s": measure_s}
    for venue in VENUES:
        v = measure({}, warmup_s, measure_s, venue=venue)
        t = v["timing"]
        out.update({
            f"feed_{venue}_pairs_healthy_at_end": v["healthy"],
            f"feed_{venue}_events_per_s": v["events_per_s"],
            f"feed_{venue}_book_p50_ms": quantile(t.book_ms, 0.5),
            f"feed_{venue}_book_p99_ms": quantile(t.book_ms, 0.99),
            f"feed_{venue}_trade_p99_ms": quantile(t.trade_ms, 0.99),
            f"feed_{venue}_cpu_cores": v["cpu_cores"],
            f"feed_{venue}_rss_end_mb": v["rss"][-1],
            f"feed_{venue}_rss_slope_mb_per_min": v["rss_slope"],
            f"feed_{venue}_rss_minute_peaks_growth_pct": peak_growth_pct(v["rss_samples"], periods=2),
        })
    return out
