"""Footprint: per candle and per price bin, the taker volume on each side, and Freqtrade's diagonal imbalances.

Inputs are trades as arrays: ``ts_us`` (exchange time, epoch microseconds), ``price`` (quote units), ``amount``
(base units), ``is_buy`` (True = the taker bought). Per (candle, bin) with at least one trade:

- ``bid_volume``: taker sells (they hit the bid), ``ask_volume``: taker buys (they lifted the ask), base units;
- ``delta`` = ask_volume - bid_volume, ``total_volume`` = ask_volume + bid_volume;
- ``trades``, ``bid_trades``, ``ask_trades``: trade counts (all, taker sells, taker buys).

Candles: a trade belongs to the candle opening at ``ts_us`` floored to a whole number of timeframes since the
epoch (Freqtrade floors trade times with pandas the same way; ``1d`` candles open at 00:00 UTC). Timeframes in
s, m, h or d. Bins: ``volume_profile.price_bins``, bin ``k`` centred on ``k * bin_size`` (Freqtrade's
``round(price / scale) * scale``, round half to even); the ``price`` index is that centre.

Diagonal imbalances, Freqtrade's rule (``freqtrade/data/converter/orderflow.py``, 2026.9): in one candle, with
the traded bins in rising price order and ``next`` the next traded bin above (not necessarily adjacent: bins
without trades in the candle are skipped, as Freqtrade skips them):

- ``bid_imbalance`` at bin p: ``bid[p] / ask[next] > imbalance_ratio`` (sellers outweigh the buyers one level up);
- ``ask_imbalance`` at bin p: ``ask[next] / bid[p] > imbalance_ratio`` (flagged on the lower bin p, as Freqtrade
  does, though the heavy side is the ask one level up);
- both False where bin p's ``total_volume < imbalance_volume`` and on the highest traded bin (no next).

The ratio is strict and a division by zero counts as infinite (``bid[p] > 0`` against ``ask[next] == 0`` is an
imbalance; 0 against 0 is not). Caveat: Freqtrade's ``bid``/``ask`` in that rule are trade COUNTS, not volumes
(its volume columns are ``bid_amount``/``ask_amount``); ``imbalance_basis="trades"`` (the default) follows it,
``"volume"`` compares base volumes instead, as most footprint charts do. Defaults (``helios.footprint``) are
Freqtrade's documented ``orderflow`` values: ratio 3, volume 1.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import IMBALANCE_BASES, FootprintSettings
from helios_orderflow.core.timeframes import timeframe_us
from helios_orderflow.signals.volume_profile import price_bins

_DEFAULTS = FootprintSettings()
#: Defaults of ``helios.footprint`` (their one home: core/settings.py).
IMBALANCE_RATIO = _DEFAULTS.imbalance_ratio
IMBALANCE_VOLUME = _DEFAULTS.imbalance_volume
IMBALANCE_BASIS = _DEFAULTS.imbalance_basis
#: Columns of ``footprint``'s frame, in order (index: ``open_time_us``, ``price``).
FOOTPRINT_COLUMNS = ("bin", "bid_volume", "ask_volume", "delta", "total_volume", "trades", "bid_trades",
                     "ask_trades", "bid_imbalance", "ask_imbalance")



def candle_length_us(timeframe: str) -> int:
    """Length of a Freqtrade-style timeframe (``30s``, ``1m``, ``5m``, ``1h``, ``1d``) in microseconds."""
    if timeframe.strip().endswith("w"):
        raise ValueError(f"timeframe {timeframe!r}: weeks are not supported here (their candles do not start on a "
                         "whole number of periods since the epoch)")
    try:
        return timeframe_us(timeframe)
    except HeliosError as exc:
        raise ValueError(str(exc)) from None


def candle_open_us(ts_us: npt.ArrayLike, timeframe: str) -> npt.NDArray[np.int64]:
    """Open time (epoch microseconds) of the candle holding each time stamp."""
    tf = candle_length_us(timeframe)
    return np.asarray(ts_us, dtype=np.int64) // tf * tf


def diagonal_imbalances(bid: npt.ArrayLike, ask: npt.ArrayLike, total_volume: npt.ArrayLike, *,
                        imbalance_ratio: float = IMBALANCE_RATIO, imbalance_volume: float = IMBALANCE_VOLUME,
                        same_candle_as_next: npt.ArrayLike | None = None,
                        ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``(bid_imbalance, ask_imbalance)`` of bins in rising price order, by the rule of the module docstring.

    ``bid``/``ask`` are what the ratio compares (counts or volumes), ``total_volume`` the bin's volume for the
    minimum. Several candles may be passed at once, each candle's bins in rising order, with
    ``same_candle_as_next[i]`` False where row ``i + 1`` belongs to another candle (the last row never has a next).
    """
    b = np.asarray(bid, dtype=np.float64)
    a = np.asarray(ask, dtype=np.float64)
    vol = np.asarray(total_volume, dtype=np.float64)
    n = len(b)
    ask_next = np.full(n, np.nan)
    if n > 1:
        ask_next[:-1] = a[1:]
    if same_candle_as_next is not None:
        ask_next[~np.asarray(same_candle_as_next, dtype=bool)] = np.nan
    enough = vol >= imbalance_volume
    with np.errstate(divide="ignore", invalid="ignore"):
        bid_imbalance = (b / ask_next > imbalance_ratio) & enough
        ask_imbalance = (ask_next / b > imbalance_ratio) & enough
    return bid_imbalance, ask_imbalance


def footprint(ts_us: npt.ArrayLike, price: npt.ArrayLike, amount: npt.ArrayLike, is_buy: npt.ArrayLike, *,
              bin_size: float, timeframe: str = "1m", imbalance_ratio: float = IMBALANCE_RATIO,
              imbalance_volume: float = IMBALANCE_VOLUME, imbalance_basis: str = IMBALANCE_BASIS) -> pd.DataFrame:
    """The footprint of the trades: one row per (candle, price bin) with trades, indexed by ``open_time_us``
    (int64, epoch microseconds) and ``price`` (the bin's centre), sorted by both; columns ``FOOTPRINT_COLUMNS``
    (module docstring). Trades may come in any order; sums add each bin's trades in the order given."""
    if imbalance_basis not in IMBALANCE_BASES:
        raise ValueError(f"imbalance_basis must be one of {', '.join(IMBALANCE_BASES)}, got {imbalance_basis!r}")
    if not imbalance_ratio >= 0 or not imbalance_volume >= 0:
        raise ValueError(f"imbalance_ratio and imbalance_volume must be >= 0, got {imbalance_ratio!r} and "
                         f"{imbalance_volume!r}")
    ts = np.asarray(ts_us, dtype=np.int64)
    p = np.asarray(price, dtype=np.float64)
    q = np.asarray(amount, dtype=np.float64)
    buy = np.asarray(is_buy, dtype=bool)
    if not (ts.shape == p.shape == q.shape == buy.shape) or ts.ndim != 1:
        raise ValueError(f"ts_us, price, amount and is_buy must be 1-d arrays of one length, got {ts.shape}, "
                         f"{p.shape}, {q.shape} and {buy.shape}")
    # The sums as one float block (nine separate columns would be copied into blocks first: most of the time on
    # millions of trades); counts are sums of ones, exact in float64.
    block = np.empty((len(q), 5))
    block[:, 0] = np.where(buy, 0.0, q)
    block[:, 1] = np.where(buy, q, 0.0)
    block[:, 2] = np.where(buy, q, -q)
    block[:, 3] = q
    block[:, 4] = buy
    sums = pd.DataFrame(block, columns=["bid_volume", "ask_volume", "delta", "total_volume", "ask_trades"],
                        copy=False).groupby([candle_open_us(ts, timeframe), price_bins(p, bin_size)], sort=True)
    grid = sums.sum()
    grid.index = grid.index.set_names(["open_time_us", "bin"])
    grid["trades"] = sums.size().to_numpy()
    grid["ask_trades"] = grid["ask_trades"].to_numpy().astype(np.int64)
    grid["bid_trades"] = grid["trades"].to_numpy() - grid["ask_trades"].to_numpy()
    candle = grid.index.get_level_values(0).to_numpy()
    bins = grid.index.get_level_values(1).to_numpy()
    basis = ("bid_trades", "ask_trades") if imbalance_basis == "trades" else ("bid_volume", "ask_volume")
    bid_imbalance, ask_imbalance = diagonal_imbalances(
        grid[basis[0]].to_numpy(), grid[basis[1]].to_numpy(), grid["total_volume"].to_numpy(),
        imbalance_ratio=imbalance_ratio, imbalance_volume=imbalance_volume,
        same_candle_as_next=np.append(candle[1:] == candle[:-1], False) if len(candle) else None,
    )
    grid = grid.reset_index()
    grid["bid_imbalance"] = bid_imbalance
    grid["ask_imbalance"] = ask_imbalance
    grid["price"] = bins.astype(np.float64) * bin_size
    return grid.set_index(["open_time_us", "price"])[list(FOOTPRINT_COLUMNS)]
