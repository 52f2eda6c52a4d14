"""Independent pandas constructions of what the liquidity page shows from trades: the footprint per candle and
heatmap bin, Freqtrade's imbalance rule (Freqtrade's own function, called as an oracle) and a volume profile's
POC and value area. Written from the definitions, not from dashboard/profile.py, so the page is checked against
them (tests/test_dashboard_figures.py, tests/test_dashboard_browser.py)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from freqtrade.data.converter.orderflow import trades_orderflow_to_imbalances

from helios_orderflow.core.events import Trade
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.importers.binance_raw import iter_events


@functools.cache
def capture_trades() -> pd.DataFrame:
    """The bundled BTCUSDT capture's trades: ts_us (exchange time), price, amount, is_buy (taker bought)."""
    trades = [e for e in iter_events(BINANCE_BTCUSDT_FILES, progress=False) if type(e) is Trade]
    return pd.DataFrame({
        "ts_us": np.array([t.ts_us for t in trades], dtype=np.int64),
        "price": np.array([t.price for t in trades]),
        "amount": np.array([t.amount for t in trades]),
        "is_buy": np.array([t.side == "buy" for t in trades]),
    })


def heatmap_bin(price: pd.Series, bin_size: float) -> pd.Series:
    """The heatmap's bin of a price: bin b covers [b * bin_size, (b + 1) * bin_size) (a price on an edge, which
    floats may put a hair below it, belongs to the upper bin)."""
    return np.floor(price / bin_size + 1e-9).astype(np.int64)


def footprint(trades: pd.DataFrame, bin_size: float, tf_us: int) -> pd.DataFrame:
    """Per (candle open µs, heatmap bin): bid (taker sells) and ask (taker buys) volume, total."""
    g = trades.assign(open_us=trades.ts_us // tf_us * tf_us, bin=heatmap_bin(trades.price, bin_size),
                      bid=np.where(trades.is_buy, 0.0, trades.amount), ask=np.where(trades.is_buy, trades.amount, 0.0))
    out = g.groupby(["open_us", "bin"])[["bid", "ask"]].sum()
    out["total_volume"] = out.bid + out.ask
    return out


def freqtrade_imbalances(cells: pd.DataFrame, ratio: float, volume: float) -> pd.DataFrame:
    """Freqtrade's ``trades_orderflow_to_imbalances`` on each candle's traded bins (rising price), on VOLUMES."""
    parts = [trades_orderflow_to_imbalances(c.droplevel(0), ratio, volume).set_axis(c.index)
             for _, c in cells.groupby(level=0)]
    return pd.concat(parts)


def value_area(per_bin: pd.Series, pct: float = 70.0, step: int = 2) -> tuple[int, int, int]:
    """(POC bin, lowest and highest value-area bin) of volume per bin (any bins): Market Profile's construction,
    ``step`` bins at a time towards the heavier side, both on a tie; a POC tie goes to the bin nearest the
    middle of the traded range, then the lower."""
    v = per_bin.reindex(range(int(per_bin.index.min()), int(per_bin.index.max()) + 1), fill_value=0.0)
    top = v[v == v.max()].index
    middle = (v.index[0] + v.index[-1]) / 2
    poc = int(min(top, key=lambda k: (abs(k - middle), k)))
    lo = hi = poc
    target = pct / 100 * v.sum()
    while v.loc[lo:hi].sum() < target * (1 - 1e-9) and (lo > v.index[0] or hi < v.index[-1]):
        above = [k for k in range(hi + 1, hi + 1 + step) if k in v.index]
        below = [k for k in range(lo - step, lo) if k in v.index]
        up = v[above].sum() if above else -1.0
        down = v[below].sum() if below else -1.0
        if up >= down:
            hi = max(above)
        if down >= up:
            lo = min(below)
    return poc, lo, hi


#: The hand-worked footprint (tests/test_dashboard_figures.py works the imbalances, tests/test_dashboard_browser.py
#: the volume profile): one 1 m candle from ``HAND_T0_US``, bin 1.0, all its trades in one 1 s column, per bin
#: (bid = taker sells, ask = taker buys, base units); the next candle trades 0.1 bought in bin 103.
HAND_T0_US = 1_723_161_600_000_000
HAND_CELLS = {97: (3.0, 0.0), 99: (0.5, 0.9), 100: (2.0, 4.0), 101: (0.1, 0.5), 102: (1.0, 6.0)}


def hand_history() -> Any:
    """``HAND_CELLS`` as a page history (11 bins around 100, 120 one-second columns)."""
    from dashboard.history import PairHistory

    h = PairHistory("hand", "A/B", 1.0, 5, 1_000_000, 200)
    for i in range(120):
        buy = np.zeros(11, np.float32)
        sell = np.zeros(11, np.float32)
        if i == 5:
            for b, (bid, ask) in HAND_CELLS.items():
                sell[b - 95] = bid
                buy[b - 95] = ask
        if i == 65:
            buy[103 - 95] = 0.1
        h.add_column(HAND_T0_US + i * 1_000_000, 100, np.ones(11, np.float32), buy, sell, (99.5, 100.5, 0.0, 0.0))
    h.flush()
    return h
