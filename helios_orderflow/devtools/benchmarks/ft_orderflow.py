"""Freqtrade's order-flow columns (``make bench``): Freqtrade's own converter against Helios's, on the same 24 h of
trades, in one run.

Input: the real Binance BTCUSDT trades bundled with the package (19,904 trades in about 11 minutes) looped for 24
hours with times and ids shifted per loop: about 2.6M trades in Freqtrade's trades format (``timestamp``, ``id``,
``type``, ``side``, ``price``, ``amount``, ``cost``, ``date``) and 1,441 one-minute candles; the ``orderflow``
config is Freqtrade's documented example (scale 0.5, imbalance_volume 1, imbalance_ratio 3,
stacked_imbalance_range 3) with ``max_candles`` covering the day.

Figures:
- ``ft_orderflow_helios_s``: ``helios_orderflow.freqtrade_orderflow.populate`` (``freqtrade.orderflow_columns``),
  median of 3 runs;
- ``ft_orderflow_freqtrade_s``: ``freqtrade.data.converter.orderflow.populate_dataframe_with_trades`` (no cache),
  one run (it takes half a minute);
- ``ft_orderflow_speedup``: the second over the first; ``ft_orderflow_speedup_cpu``: the same in CPU time (this
  process's, less disturbed by others on a shared machine);
- ``ft_orderflow_trades``: trades in the day; ``ft_orderflow_equal``: 1 when both gave the same frame, cell for
  cell (every record of ``trades``, every footprint dict), else 0.
``quick=True`` uses 1 hour instead of 24.
"""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

HOUR_MS = 3_600_000
CONFIG: dict[str, Any] = {"timeframe": "1m", "orderflow": {
    "cache_size": 1500, "max_candles": 1500, "scale": 0.5, "imbalance_volume": 1.0, "imbalance_ratio": 3.0,
    "stacked_imbalance_range": 3}}


def looped_trades(hours: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(candles, trades)``: the bundled capture's trades looped for ``hours`` (module docstring)."""
    from helios_orderflow.core.events import Trade
    from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
    from helios_orderflow.importers.binance_raw import iter_events

    base = [e for e in iter_events(BINANCE_BTCUSDT_FILES, progress=False) if type(e) is Trade]
    ts = np.array([t.ts_us // 1000 for t in base], dtype=np.int64)
    ids = np.array([int(t.trade_id) for t in base], dtype=np.int64)
    first, period = int(ts.min()), int(ts.max() - ts.min()) + 100
    loops = int(np.ceil(hours * HOUR_MS / period))
    shift = np.repeat(np.arange(loops, dtype=np.int64), len(ts))
    ts_all = np.tile(ts, loops) + shift * period
    keep = ts_all < first + int(hours * HOUR_MS)
    price = np.tile(np.array([t.price for t in base]), loops)[keep]
    amount = np.tile(np.array([t.amount for t in base]), loops)[keep]
    trades = pd.DataFrame({
        "timestamp": ts_all[keep],
        "id": (np.tile(ids, loops) + shift * (int(ids.max() - ids.min()) + 1))[keep].astype(str),
        "type": None,
        "side": np.tile(np.array([t.side for t in base], dtype=object), loops)[keep],
        "price": price,
        "amount": amount,
        "cost": price * amount,
    })
    trades["date"] = pd.to_datetime(trades["timestamp"], unit="ms", utc=True)
    first_min = first // 60_000 * 60_000
    count = (int(trades["timestamp"].iloc[-1]) // 60_000 * 60_000 - first_min) // 60_000 + 1
    dates = pd.date_range(pd.Timestamp(first_min, unit="ms", tz="UTC"), periods=count, freq="1min")
    candles = pd.DataFrame({"date": dates, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    return candles, trades


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and bool(a == b)


def run(quick: bool = False) -> dict[str, float]:
    from freqtrade.data.converter.orderflow import populate_dataframe_with_trades

    from helios_orderflow.freqtrade.orderflow_columns import populate

    candles, trades = looped_trades(1.0 if quick else 24.0)
    # Each converter is timed with no other result alive (millions of dicts alive make every garbage collection
    # in the other's run slower); the comparison runs afterwards.
    times, cpu_times = [], []
    for _ in range(3):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        result = populate(candles, trades, CONFIG)
        # freeing the result is not timed, as for Freqtrade's below
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        del result
    helios_s, helios_cpu_s = statistics.median(times), statistics.median(cpu_times)
    gc.collect()
    frames = candles.copy(), trades.copy()  # Freqtrade changes both in place
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas deprecations inside Freqtrade's code
        theirs, _ = populate_dataframe_with_trades(None, CONFIG, *frames)
    freqtrade_s, freqtrade_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    ours = populate(candles, trades, CONFIG)
    equal = list(ours.columns) == list(theirs.columns) and ours.dtypes.equals(theirs.dtypes) and all(
        all(_same(a, b) for a, b in zip(ours[c], theirs[c], strict=True)) for c in theirs.columns)
    return {
        "ft_orderflow_trades": float(len(trades)),
        "ft_orderflow_freqtrade_s": freqtrade_s,
        "ft_orderflow_helios_s": helios_s,
        "ft_orderflow_speedup": freqtrade_s / helios_s,
        "ft_orderflow_speedup_cpu": freqtrade_cpu_s / helios_cpu_s,
        "ft_orderflow_equal": float(equal),
    }
