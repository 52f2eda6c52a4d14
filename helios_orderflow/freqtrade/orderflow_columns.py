"""Freqtrade's order-flow columns, computed from trades Helios holds (no REST trade download).

Freqtrade (``exchange.use_public_trades`` and the ``orderflow`` config section; 2026.9,
``freqtrade/data/converter/orderflow.py``) adds these columns to the candles; ``populate`` adds the same, with
the same names, dtypes and cell values, built on ``signals.footprint``:

- ``trades`` (object): the candle's trades as a list of records (one dict per trade, the columns of the trades
  frame passed in, in the order given);
- ``orderflow`` (object): ``{price: {"bid", "ask", "delta", "bid_amount", "ask_amount", "total_volume",
  "total_trades"}}`` per traded price bin (``price`` = ``round(price / scale) * scale``, a float, rising). ``bid`` /
  ``ask`` / ``total_trades`` are trade COUNTS (int; bid = taker sells), ``bid_amount`` / ``ask_amount`` /
  ``total_volume`` / ``delta`` base volumes (float, delta = ask_amount - bid_amount);
- ``imbalances`` (object): ``{price: {"bid_imbalance": bool, "ask_imbalance": bool}}``, the diagonal rule of
  ``signals.footprint`` on trade counts (``imbalance_ratio``, ``imbalance_volume``);
- ``stacked_imbalances_bid`` / ``_ask`` (object): a list of prices (``numpy.float64``), one per window of
  ``stacked_imbalance_range`` consecutive traded bins that all carry the imbalance, the window's lowest price
  (a run of 4 with range 3 gives its 1st and 2nd price); ``[]`` when none. "Consecutive" is consecutive traded
  bins: empty price levels in between do not break a run (Freqtrade's rule);
- ``bid``, ``ask``, ``delta`` (float64): the candle's taker-sell and taker-buy base volume and ask - bid;
  ``min_delta`` / ``max_delta`` (float64): min and max of the running delta over the candle's trades in the order
  given (the delta after each trade, so the first trade's counts); ``total_trades`` (float64): the trade count.

Which candles get values: the trade at ``timestamp`` (epoch ms) belongs to the candle opening at the timestamp
floored to a whole number of timeframes since the epoch (``s``/``m``/``h``/``d`` timeframes); only candles among
the last ``max_candles`` rows (rows dated at or after the first of them) that have a trade get values, every
other cell is NaN, and trades whose candle is not a row are ignored. No trades at all: all the columns, all NaN.

Known differences from Freqtrade, all on input Freqtrade rejects or mishandles: a ``side`` other than ``buy`` /
``sell`` raises here (Freqtrade counts it in ``total_trades`` only); ``stacked_imbalance_range`` < 1 and
``max_candles`` < 1 raise ``ConfigError`` (Freqtrade fails inside); an empty candle frame gets the columns (Freqtrade
raises); weeks and months as timeframe raise ``ValueError``. Freqtrade's cache (``cache_size``) is not needed: each
call computes from the trades given (``OrderflowCells`` keeps finished candles' cells for a caller that calls
again with more trades, as the live strategy does). Sums per bin add in the trades' order like Freqtrade's, so
cells are equal to the last bit (checked in ``tests/test_freqtrade_orderflow.py`` against Freqtrade's own function).

Speed (``ft_orderflow_speedup`` in ``make bench``): the per-trade work is NumPy over whole arrays (candle of each
trade, one stable sort, the footprint's grouped sums, running deltas); Python objects are made once each: one
dict per trade for ``trades`` (from column lists, Timestamps boxed once per distinct time), one dict per traded
bin, with the cyclic garbage collector paused while they are made (millions of new containers would otherwise
trigger it hundreds of times, each pass walking all of them: three quarters of the time).
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.signals.footprint import candle_length_us, candle_open_us, footprint

#: The columns ``populate`` adds, in Freqtrade's order (``freqtrade.constants.ORDERFLOW_ADDED_COLUMNS``).
ORDERFLOW_COLUMNS = ("trades", "orderflow", "imbalances", "stacked_imbalances_bid", "stacked_imbalances_ask",
                     "max_delta", "min_delta", "bid", "ask", "delta", "total_trades")
#: Of those, the ones holding Python objects (lists, dicts); the others are float64.
OBJECT_COLUMNS = ("trades", "orderflow", "imbalances", "stacked_imbalances_bid", "stacked_imbalances_ask")
#: Keys of one ``orderflow`` cell's per-price dict, in Freqtrade's order.
ORDERFLOW_CELL_KEYS = ("bid", "ask", "delta", "bid_amount", "ask_amount", "total_volume", "total_trades")
#: The trades frame's columns ``populate`` needs (Freqtrade's trades format has also ``id``, ``type``, ``cost``).
REQUIRED_TRADE_COLUMNS = ("timestamp", "side", "price", "amount")
#: Columns Freqtrade adds to a trades frame it is given; left out of the ``trades`` records, as Freqtrade does.
FREQTRADE_HELPER_COLUMNS = ("candle_start", "candle_end")
#: ``orderflow.max_candles`` when the config has none (Freqtrade's default); the other keys are required, as in
#: Freqtrade's config schema.
MAX_CANDLES_DEFAULT = 1500

#: One candle's values of ``ORDERFLOW_COLUMNS``, in that order.
Cells = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class OrderflowParams:
    """The config keys the columns depend on: Freqtrade's ``timeframe`` and its ``orderflow`` section."""

    timeframe: str
    scale: float
    imbalance_ratio: float
    imbalance_volume: float
    stacked_imbalance_range: int
    max_candles: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OrderflowParams:
        """Read and check them (``ConfigError`` naming the key when one is missing or wrong)."""
        timeframe, scale, ratio, volume, stacked_range, max_candles = _read_config(config)
        candle_length_us(timeframe)  # weeks and months raise here, at the config, not at the first trade
        return cls(timeframe, scale, ratio, volume, stacked_range, max_candles)

    @property
    def candle_us(self) -> int:
        return candle_length_us(self.timeframe)


def populate(dataframe: pd.DataFrame, trades: pd.DataFrame | None, config: Mapping[str, Any]) -> pd.DataFrame:
    """The candles with Freqtrade's order-flow columns (module docstring), as a new frame (the input is not
    changed; columns of those names already present are replaced).

    ``dataframe``: candles as Freqtrade gives them, a ``date`` column of candle open times (tz-aware, or naive
    meaning UTC). ``trades``: Freqtrade's trades format, ``timestamp`` (epoch ms, int), ``side`` (``"buy"`` =
    the taker bought, ``"sell"``), ``price`` (quote units), ``amount`` (base units), and any others (``id``,
    ``type``, ``cost``, ``date``), carried into the ``trades`` records (except Freqtrade's ``candle_start`` /
    ``candle_end``). Any order; each candle's trades are taken in the order given. ``config``: the Freqtrade
    config, ``timeframe`` and the ``orderflow`` section's ``scale``, ``imbalance_volume``, ``imbalance_ratio``,
    ``stacked_imbalance_range`` and ``max_candles``.
    """
    params = OrderflowParams.from_config(config)
    if trades is None or trades.empty or dataframe.empty:
        return place(dataframe, {}, params)
    _check_trades(trades)
    first_us, opens = window(dataframe, params)
    trade_open_us = candle_open_us(trades["timestamp"].to_numpy(dtype=np.int64) * 1000, params.timeframe)
    # Only trades whose candle is a row of the window: Freqtrade ignores the others.
    in_window = (trade_open_us >= first_us) & np.isin(trade_open_us, opens)
    return place(dataframe, candle_cells(trades, params, np.flatnonzero(in_window)), params)


def window(dataframe: pd.DataFrame, params: OrderflowParams) -> tuple[int, npt.NDArray[np.int64]]:
    """``(first open time, open times of the rows)`` in epoch µs: the rows dated at or after the first of the
    last ``max_candles`` rows get values (Freqtrade's rule); ``first`` is the largest int64 for no rows."""
    opens = _open_times_us(dataframe["date"])
    if not len(opens):
        return int(np.iinfo(np.int64).max), opens
    return int(opens[max(len(opens) - params.max_candles, 0)]), opens


def place(dataframe: pd.DataFrame, cells: Mapping[int, Cells | None], params: OrderflowParams) -> pd.DataFrame:
    """A copy of ``dataframe`` with ``ORDERFLOW_COLUMNS``: each row of the window (``window``) whose open time
    (epoch µs) has ``cells`` (not None) gets them, every other cell is NaN (object columns: float NaN, as
    Freqtrade)."""
    out = dataframe.copy()
    n = len(out)
    columns = [np.full(n, np.nan, dtype=object if c in OBJECT_COLUMNS else np.float64) for c in ORDERFLOW_COLUMNS]
    if n and cells:
        first_us, opens = window(out, params)
        seen: set[int] = set()
        for r, o in enumerate(opens.tolist()):
            values = cells.get(o) if o >= first_us and o not in seen else None
            seen.add(o)  # a duplicated date: its first row only, as Freqtrade
            if values is not None:
                for column, value in zip(columns, values, strict=True):
                    column[r] = value
    for name, column in zip(ORDERFLOW_COLUMNS, columns, strict=True):
        out[name] = column
    return out


def candle_cells(trades: pd.DataFrame, params: OrderflowParams,
                 take: npt.NDArray[np.intp] | None = None) -> dict[int, Cells]:
    """Per candle with trades (key: its open time, epoch µs), its values of ``ORDERFLOW_COLUMNS``, from the
    trades at positions ``take`` of ``trades`` (default: all; checked by the caller), each candle's trades in
    the order of ``take``."""
    ts_ms = trades["timestamp"].to_numpy(dtype=np.int64)
    if take is None:
        take = np.arange(len(ts_ms))
    if not len(take):
        return {}
    open_us = candle_open_us(ts_ms[take] * 1000, params.timeframe)
    order = np.argsort(open_us, kind="stable")  # candle by candle, each candle's trades in the order given
    take, open_us = take[order], open_us[order]
    is_buy = (trades["side"] == "buy").to_numpy(dtype=bool)[take]
    amount = trades["amount"].to_numpy(dtype=np.float64)[take]
    fp = footprint(ts_ms[take] * 1000, trades["price"].to_numpy(dtype=np.float64)[take], amount, is_buy,
                   bin_size=params.scale, timeframe=params.timeframe, imbalance_ratio=params.imbalance_ratio,
                   imbalance_volume=params.imbalance_volume, imbalance_basis="trades")
    fp_open = fp.index.get_level_values("open_time_us").to_numpy()
    fp_price = fp.index.get_level_values("price").to_numpy()
    bid_flag, ask_flag = fp["bid_imbalance"].to_numpy(), fp["ask_imbalance"].to_numpy()
    stacked_bid = np.flatnonzero(_stacked_starts(bid_flag, fp_open, params.stacked_imbalance_range))
    stacked_ask = np.flatnonzero(_stacked_starts(ask_flag, fp_open, params.stacked_imbalance_range))

    # Candle boundaries in the trades (sorted by candle) and in the footprint (sorted by candle, then price).
    candles = np.unique(open_us)
    trade_bounds = _bounds(open_us, candles)
    fp_bounds = _bounds(fp_open, candles)
    bid_bounds = _bounds(fp_open[stacked_bid], candles)
    ask_bounds = _bounds(fp_open[stacked_ask], candles)
    # Freqtrade's stacked prices are NumPy float64 scalars (list of an array gives those).
    stacked_bid_prices, stacked_ask_prices = list(fp_price[stacked_bid]), list(fp_price[stacked_ask])

    bid_amount = np.where(is_buy, 0.0, amount)
    ask_amount = np.where(is_buy, amount, 0.0)
    delta_per_trade = ask_amount - bid_amount
    with _gc_paused():
        records = trade_records(trades, take, is_buy)
        prices = fp_price.tolist()
        bins = [{"bid": b, "ask": a, "delta": d, "bid_amount": ba, "ask_amount": aa, "total_volume": tv,
                 "total_trades": tt}
                for b, a, d, ba, aa, tv, tt in zip(*(fp[c].tolist() for c in (
                    "bid_trades", "ask_trades", "delta", "bid_volume", "ask_volume", "total_volume", "trades")),
                    strict=True)]
        flags = [{"bid_imbalance": b, "ask_imbalance": a}
                 for b, a in zip(bid_flag.tolist(), ask_flag.tolist(), strict=True)]
        out: dict[int, Cells] = {}
        for i, candle in enumerate(candles.tolist()):
            t0, t1 = trade_bounds[i], trade_bounds[i + 1]
            f0, f1 = fp_bounds[i], fp_bounds[i + 1]
            # Plain NumPy reductions over the candle's trades in order, as Freqtrade sums them (same floats).
            running = np.cumsum(delta_per_trade[t0:t1])
            bid, ask = bid_amount[t0:t1].sum(), ask_amount[t0:t1].sum()
            out[candle] = (
                records[t0:t1],
                dict(zip(prices[f0:f1], bins[f0:f1], strict=True)),
                dict(zip(prices[f0:f1], flags[f0:f1], strict=True)),
                stacked_bid_prices[bid_bounds[i]:bid_bounds[i + 1]],
                stacked_ask_prices[ask_bounds[i]:ask_bounds[i + 1]],
                running.max(), running.min(), bid, ask, ask - bid, float(t1 - t0),
            )
    return out


def trade_records(trades: pd.DataFrame, take: npt.NDArray[np.intp],
                  is_buy: npt.NDArray[np.bool_] | None = None) -> list[dict[Any, Any]]:
    """The rows at ``take`` as dicts, equal to Freqtrade's ``to_dict(orient="records")`` (columns in order, less
    ``FREQTRADE_HELPER_COLUMNS``; NumPy numbers as Python ones, date-times as pandas Timestamps). ``is_buy``: the
    ``side`` column at ``take`` as booleans, when it is known to hold only "buy" and "sell" (checked)."""
    names = [c for c in trades.columns if c not in FREQTRADE_HELPER_COLUMNS]
    columns = [_python_values(trades[c], take, is_buy if c == "side" else None) for c in names]
    return _record_maker(tuple(names))(zip(*columns, strict=True))


def _python_values(series: pd.Series, take: npt.NDArray[np.intp],
                   is_buy: npt.NDArray[np.bool_] | None = None) -> list[Any]:
    """The values at ``take`` as pandas' ``to_dict`` gives them. ``is_buy``: the column is ``side`` and holds only
    "buy" / "sell" (these booleans at ``take``): two shared strings instead of one per trade."""
    dtype = series.dtype
    if is_buy is not None:
        return np.array(["sell", "buy"], dtype=object)[is_buy.view(np.int8)].tolist()
    if isinstance(dtype, pd.DatetimeTZDtype) or (isinstance(dtype, np.dtype) and dtype.kind in "mM"):
        values = series.array[take]
        # Trades share times (many per millisecond): box each run of equal times once, then repeat the object.
        i8 = np.asarray(values.asi8)
        starts = np.flatnonzero(np.append(True, i8[1:] != i8[:-1])) if len(i8) else np.empty(0, np.intp)
        boxed = np.empty(len(starts), dtype=object)
        boxed[:] = list(values[starts])
        return np.repeat(boxed, np.diff(np.append(starts, len(i8)))).tolist()
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        return series.to_numpy()[take].tolist()
    out: list[Any] = series.to_numpy(dtype=object)[take].tolist()
    # pandas boxes NumPy scalars held in object columns as Python ones; string columns hold none
    if not isinstance(dtype, pd.StringDtype) and any(issubclass(t, np.generic) for t in set(map(type, out))):
        out = [_box_native(v) for v in out]
    return out


def _box_native(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value)
    if isinstance(value, np.timedelta64):
        return pd.Timedelta(value)
    return value.item() if isinstance(value, np.generic) else value


@functools.lru_cache(maxsize=64)
def _record_maker(names: tuple[Any, ...]) -> Callable[[Iterator[tuple[Any, ...]]], list[dict[Any, Any]]]:
    """A function turning row tuples into dicts keyed by ``names``. For string names it is a list display of
    dict displays, compiled once per set of names (as ``collections.namedtuple`` compiles its class): building
    millions of dicts that way takes half the time of ``dict(zip(names, row))``."""
    if not names or not all(type(n) is str for n in names):
        return lambda rows: [dict(zip(names, row, strict=True)) for row in rows]
    values = [f"v{i}" for i in range(len(names))]
    body = ", ".join(f"{name!r}: {value}" for name, value in zip(names, values, strict=True))
    # repr of a str is a string literal: the generated code holds no name of the data's choosing
    code = f"lambda rows: [{{{body}}} for ({', '.join(values)},) in rows]"
    maker: Callable[[Iterator[tuple[Any, ...]]], list[dict[Any, Any]]] = eval(code, {})
    return maker


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many containers are made (none of them in a cycle), and hand
    what was made to the oldest generation: the youngest one's next pass would walk them all (about an eighth of
    the time on a day of trades) only to promote them. ``gc.freeze`` then ``gc.unfreeze`` does that move without a
    walk; it is used only when nothing else is frozen (unfreezing would thaw another's frozen objects). The
    collector is turned back on only if it was on, so nested or concurrent pauses end with it as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def _bounds(sorted_opens: npt.NDArray[np.int64], candles: npt.NDArray[np.int64]) -> list[int]:
    """Where each candle's rows start in ``sorted_opens``, and its length at the end (candle i: [b[i], b[i+1]))."""
    return [*np.searchsorted(sorted_opens, candles, side="left").tolist(), len(sorted_opens)]


def _stacked_starts(flag: npt.NDArray[np.bool_], open_us: npt.NDArray[np.int64],
                    stacked_range: int) -> npt.NDArray[np.bool_]:
    """True at each bin that starts a window of ``stacked_range`` consecutive flagged bins of one candle (bins
    in the footprint's order: by candle, then rising price)."""
    n = len(flag)
    idx = np.arange(n)
    new_candle = np.ones(n, dtype=bool)
    new_candle[1:] = open_us[1:] != open_us[:-1]
    previous_flag = np.zeros(n, dtype=bool)
    previous_flag[1:] = flag[:-1]
    run_start = flag & (new_candle | ~previous_flag)
    start_index = np.maximum.accumulate(np.where(run_start, idx, 0)) if n else idx
    run_length = np.where(flag, idx - start_index + 1, 0)  # flagged bins so far in the run, this one included
    ends = np.flatnonzero(run_length >= stacked_range)
    starts = np.zeros(n, dtype=bool)
    starts[ends - (stacked_range - 1)] = True
    return starts


def _open_times_us(dates: pd.Series) -> npt.NDArray[np.int64]:
    """Candle open times as epoch microseconds (naive times taken as UTC)."""
    index = pd.DatetimeIndex(dates)
    index = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    return np.asarray(index.as_unit("us").asi8, dtype=np.int64)


def _check_trades(trades: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_TRADE_COLUMNS if c not in trades.columns]
    if missing:
        raise ValueError(f"trades: missing column(s) {', '.join(missing)}; pass Freqtrade's trades format "
                         f"(timestamp ms, id, type, side, price, amount, cost), got columns {list(trades.columns)}")
    bad = ~trades["side"].isin(("buy", "sell"))
    if bad.any():
        raise ValueError(f"trades: side must be 'buy' or 'sell' (the taker's side), got "
                         f"{sorted(map(str, trades['side'][bad].unique()))[:5]}")


def _read_config(config: Mapping[str, Any]) -> tuple[str, float, float, float, int, int]:
    """``(timeframe, scale, imbalance_ratio, imbalance_volume, stacked_imbalance_range, max_candles)``."""
    timeframe = config.get("timeframe")
    if not isinstance(timeframe, str):
        raise ConfigError(f"timeframe: the config names no timeframe (e.g. \"1m\"), got {timeframe!r}")
    section = config.get("orderflow")
    if not isinstance(section, Mapping):
        raise ConfigError("orderflow: the config has no 'orderflow' section; add one with scale, imbalance_volume, "
                          "imbalance_ratio, stacked_imbalance_range and max_candles (Freqtrade's order-flow keys)")

    def number(key: str, default: float | None = None) -> float:
        value = section.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise ConfigError(f"orderflow.{key}: must be a number, got {value!r}")
        return float(value)

    scale = number("scale")
    if not scale > 0:
        raise ConfigError(f"orderflow.scale: must be a price step > 0 (quote units, e.g. 0.5), got {scale!r}")
    ratio, volume = number("imbalance_ratio"), number("imbalance_volume")
    if ratio < 0 or volume < 0:
        raise ConfigError(f"orderflow.imbalance_ratio and orderflow.imbalance_volume must be >= 0, got {ratio!r} "
                          f"and {volume!r}")
    stacked_range, max_candles = number("stacked_imbalance_range"), number("max_candles", MAX_CANDLES_DEFAULT)
    for key, value in (("stacked_imbalance_range", stacked_range), ("max_candles", max_candles)):
        if value < 1 or value != int(value):
            raise ConfigError(f"orderflow.{key}: must be a whole number >= 1, got {value!r}")
    return timeframe, scale, ratio, volume, int(stacked_range), int(max_candles)
