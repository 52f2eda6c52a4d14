"""A synthetic, seeded ``PairHistory`` of a chosen size, for the payload benchmark and the browser render test.

The acceptance case is one hour of 400-bin columns with 10,000 trades: ``synthetic_history(3600, 200,
10_000)``. The book is built to look like a real one where it matters for the wire size: resting sizes
persist from one column to the next (levels change a little each second, walls stay for minutes), the mid
walks, and trades print near the mid. Sizes are base units; the clock starts at ``start_us``.
"""

from __future__ import annotations

import numpy as np

from .history import PairHistory


def synthetic_history(columns: int = 3600, half_bins: int = 200, trades: int = 10_000, *, column_us: int = 1_000_000,
                      start_us: int = 1_723_161_600_000_000, bin_size: float = 5.0, mid: float = 61_700.0,
                      seed: int = 7) -> PairHistory:
    rng = np.random.default_rng(seed)
    h = half_bins
    w = 2 * h + 1
    hist = PairHistory("synthetic", "BTC/USDT", bin_size, h, column_us, columns)
    # Mid as a random walk in bins; levels as a slowly changing absolute-price profile.
    steps = rng.choice([-1, 0, 0, 0, 0, 0, 1], size=columns)
    anchor0 = int(mid // bin_size)
    anchors = anchor0 + np.cumsum(steps)
    lo = int(anchors.min()) - h
    n_abs = int(anchors.max()) + h - lo + 1
    profile = rng.lognormal(mean=0.0, sigma=0.8, size=n_abs)
    walls = rng.choice(n_abs, size=12, replace=False)
    trade_cols = np.sort(rng.integers(0, columns, size=trades))
    per_col = np.bincount(trade_cols, minlength=columns)
    cvd = 0.0
    for i in range(columns):
        if i % 10 == 0:  # the book drifts a little every 10 s
            profile *= rng.lognormal(0.0, 0.05, size=n_abs)
        a = int(anchors[i])
        base = a - h - lo
        liq = profile[base:base + w].astype(np.float32).copy()
        for wb in walls:
            j = wb - base
            if 0 <= j < w and (i // 600 + wb) % 3 != 0:  # walls come and go every 10 minutes
                liq[j] += 40.0
        buy = np.zeros(w, np.float32)
        sell = np.zeros(w, np.float32)
        k = int(per_col[i])
        if k:
            js = np.clip(h + rng.integers(-3, 4, size=k), 0, w - 1)
            amts = rng.lognormal(-3.0, 1.2, size=k).astype(np.float32)
            sides = rng.random(k) < 0.5
            np.add.at(buy, js[sides], amts[sides])
            np.add.at(sell, js[~sides], amts[~sides])
            cvd += float(amts[sides].sum() - amts[~sides].sum())
        bid = (a + 0.5) * bin_size - 0.01
        hist.add_column(start_us + i * column_us, a, liq, buy, sell, (bid, bid + 0.01, cvd, 0.3 * i))
    hist.flush()
    return hist
