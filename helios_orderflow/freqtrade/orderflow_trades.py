"""Where HeliosStrategy's Freqtrade order-flow columns get their trades, and the cells it keeps between calls.

Freqtrade's own order flow (``exchange.use_public_trades``) downloads trades over REST, and only where the
exchange pages trade history (Binance, Kraken). Helios already has every trade: live, the feed's ``TradeTape``
(websocket trades of any ccxt.pro venue, kept for ``max_candles`` candles); in backtests, hyperopt, plots and
FreqUI charts, the recordings under ``helios.backtest.recordings``. Both become a trades frame in Freqtrade's
format (``timestamp`` ms, ``id``, ``type``, ``side``, ``price``, ``amount``, ``cost``, ``date``, with the dtypes
Freqtrade's ``trades_convert_types`` gives), in arrival order (the order the feed saw them, which is the
order the recording holds), so the columns of a candle are the same live and replayed.

``OrderflowCells`` keeps each finished candle's cells (the values of every column for its row): live,
Freqtrade analyzes every few seconds, and only candles not seen finished before are computed again. A candle
is finished when the feed has a trade at or after its close (live), or always (recordings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import Trade
from helios_orderflow.freqtrade.orderflow_columns import Cells, OrderflowParams, candle_cells, place, window
from helios_orderflow.live.trade_tape import TapeTrades
from helios_orderflow.recording.reader import RecordingIndex, index_recording, read_events
from helios_orderflow.recording.store import Location

log = logging.getLogger(__name__)

#: Freqtrade's trades columns (``freqtrade.constants.DEFAULT_TRADES_COLUMNS``); ``date`` is added after them.
TRADES_COLUMNS = ("timestamp", "id", "type", "side", "price", "amount", "cost")


def trades_frame(ts_us: npt.NDArray[np.int64], price: npt.NDArray[np.float64], amount: npt.NDArray[np.float64],
                 is_buy: npt.NDArray[np.bool_], trade_id: npt.NDArray[np.object_]) -> pd.DataFrame:
    """Trades as Freqtrade holds them (its ``trades_list_to_df``): exchange time floored to the millisecond,
    ``type`` None (ccxt's, unknown here), ``cost`` = price x amount, ``date`` the time as UTC datetime."""
    from freqtrade.data.converter.trade_converter import trades_convert_types

    frame = pd.DataFrame({
        "timestamp": np.asarray(ts_us, dtype=np.int64) // 1000,
        "id": trade_id,
        "type": np.full(len(ts_us), None, dtype=object),
        "side": np.where(is_buy, "buy", "sell").astype(object),
        "price": price,
        "amount": amount,
        "cost": price * amount,
    }, columns=list(TRADES_COLUMNS))
    return trades_convert_types(frame)


def tape_frame(trades: TapeTrades, keep: npt.NDArray[np.bool_] | None = None) -> pd.DataFrame:
    """The tape's trades (those where ``keep``) in Freqtrade's format."""
    sel = slice(None) if keep is None else keep
    return trades_frame(trades.ts_us[sel], trades.price[sel], trades.amount[sel], trades.is_buy[sel],
                        trades.trade_id[sel])


def recorded_trades(recordings: list[Location], exchange: str, pair: str, start_us: int, end_us: int) -> pd.DataFrame:
    """``pair``'s recorded trades with exchange time in [start_us, end_us), from every recording that has the pair
    (on ``exchange`` where recorded there, else on the one it was recorded on), in Freqtrade's format, each
    recording's trades in recorded order; a trade (time and id) seen in an earlier recording is left out
    (overlapping runs). Only the trades tables are read; a folder that is not a readable recording is skipped."""
    trades: list[Trade] = []
    for root in recordings:
        try:
            index = index_recording(root)
        except HeliosError:
            continue
        streams = sorted(s for s in index.files if s[1] == pair)
        if not streams:
            continue
        stream = next((s for s in streams if s[0] == exchange), streams[0])
        files = index.files[stream].get("trades")
        if not files:
            continue
        only_trades = RecordingIndex(index.base, {stream: {"trades": files}})
        trades.extend(e for e in read_events(only_trades, start_us=start_us, end_us=end_us) if type(e) is Trade)
    n = len(trades)
    frame = trades_frame(np.fromiter((t.ts_us for t in trades), np.int64, n),
                         np.fromiter((t.price for t in trades), np.float64, n),
                         np.fromiter((t.amount for t in trades), np.float64, n),
                         np.fromiter((t.side == "buy" for t in trades), bool, n),
                         np.array([t.trade_id for t in trades], dtype=object))
    if len(recordings) > 1 and n:
        frame = frame[~frame.duplicated(["timestamp", "id"], keep="first")].reset_index(drop=True)
    return frame


class OrderflowCells:
    """Per pair, the cells of finished candles (open time µs -> ``Cells``, None: no trades), for the rows of the
    last call's window only (older ones are dropped), so memory follows ``max_candles``."""

    def __init__(self, params: OrderflowParams) -> None:
        self.params = params
        self._cells: dict[str, dict[int, Cells | None]] = {}
        self.computed_candles = 0  # candles computed (not served from the cache), for tests and logs

    def __getstate__(self) -> dict[str, Any]:
        return {"params": self.params, "_cells": {}, "computed_candles": 0}  # hyperopt pickles the strategy

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def add_from_tape(self, dataframe: pd.DataFrame, pair: str, tape: Any,
                      recordings: Callable[[], list[Location]] | None = None, exchange: str = "") -> pd.DataFrame:
        """``dataframe`` with the columns from the feed's ``TradeTape`` of the pair (None: all NaN). Candles that
        closed before the tape's oldest trade (before the feed started) come from ``recordings()`` (the live
        recording of earlier runs, on ``exchange``) when given, else are NaN; the candle the feed started in
        holds the trades since then."""
        first_us, opens = window(dataframe, self.params)
        cache = self._window_cache(pair, first_us)
        wanted = self._missing(cache, opens, first_us)
        if tape is None or not wanted.size:
            return place(dataframe, cache, self.params)
        candle_us = self.params.candle_us
        oldest = tape.oldest_ts_us()
        if oldest < 0:  # no trade yet: nothing is known to be finished
            return place(dataframe, cache, self.params)
        before_feed = wanted[wanted + candle_us <= oldest]
        if before_feed.size:
            found = self._recorded_cells(recordings() if recordings is not None else [], exchange, pair, before_feed)
            cache.update((o, found.get(o)) for o in before_feed.tolist())
            wanted = wanted[wanted + candle_us > oldest]
            if not wanted.size:
                return place(dataframe, cache, self.params)
        trades: TapeTrades = tape.trades_since(int(wanted.min()))
        open_us = trades.ts_us // candle_us * candle_us
        keep = np.isin(open_us, wanted)
        fresh = candle_cells(tape_frame(trades, keep), self.params) if keep.any() else {}
        self.computed_candles += len(fresh)
        # Candles that closed before the newest trade the tape had are final: kept (None: no trades).
        finished = wanted[wanted <= trades.newest_ts_us - candle_us].tolist()
        cache.update((o, fresh.get(o)) for o in finished)
        return place(dataframe, {**cache, **fresh}, self.params)

    def add_from_recordings(self, dataframe: pd.DataFrame, pair: str, recordings: list[Location],
                            exchange: str) -> pd.DataFrame:
        """``dataframe`` with the columns from the pair's recorded trades (every candle final)."""
        first_us, opens = window(dataframe, self.params)
        cache = self._window_cache(pair, first_us)
        wanted = self._missing(cache, opens, first_us)
        if wanted.size:
            found = self._recorded_cells(recordings, exchange, pair, wanted)
            cache.update((o, found.get(o)) for o in wanted.tolist())
        return place(dataframe, cache, self.params)

    def _recorded_cells(self, recordings: list[Location], exchange: str, pair: str,
                        wanted: npt.NDArray[np.int64]) -> dict[int, Cells]:
        """The cells of the ``wanted`` candles (open times, µs) that have recorded trades."""
        if not recordings:
            return {}
        trades = recorded_trades(recordings, exchange, pair, int(wanted.min()),
                                 int(wanted.max()) + self.params.candle_us)
        if not len(trades):
            return {}
        open_us = trades["timestamp"].to_numpy(dtype=np.int64) * 1000
        open_us = open_us // self.params.candle_us * self.params.candle_us
        found = candle_cells(trades, self.params, np.flatnonzero(np.isin(open_us, wanted)))
        self.computed_candles += len(found)
        return found

    def _window_cache(self, pair: str, first_us: int) -> dict[int, Cells | None]:
        cache = self._cells.setdefault(pair, {})
        for o in [o for o in cache if o < first_us]:
            del cache[o]
        return cache

    @staticmethod
    def _missing(cache: Mapping[int, Cells | None], opens: npt.NDArray[np.int64],
                 first_us: int) -> npt.NDArray[np.int64]:
        rows = opens[opens >= first_us]
        return np.asarray([o for o in rows.tolist() if o not in cache], dtype=np.int64)


__all__ = ["TRADES_COLUMNS", "OrderflowCells", "recorded_trades", "tape_frame", "trades_frame"]
