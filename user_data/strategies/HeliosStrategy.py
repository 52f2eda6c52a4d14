"""HeliosStrategy: buy where aggressive sellers hit a bid wall that holds, with the stop behind that wall.

The idea (mirrored for shorts on futures):

1. **Entry**: in the candle just closed, sellers hit a bid wall for half its size (helios.absorption.frac)
   and the wall held (bullish absorption), the pair is oversold (RSI below ``buy_rsi``) and a bid wall
   still sits below the close. The wall is where passive buyers are: a reversal up becomes likelier, and
   it marks where the idea is wrong.
2. **Before the order**: the live order book must still back the signal (fresh and healthy, a tight spread,
   a wall still below the price) or the entry is dropped. The order is a LIMIT joining the best bid.
3. **Stop**: just behind the nearest wall that protects the trade, following the walls as they move, never
   loosening. **Size**: 1-2 % of equity is lost if that stop is hit.
4. **Exit**: the ROI table, the stop, or buying exhausting (a new high that aggressive buyers no longer push).

The order-flow columns (``of_*``: absorption, walls, CVD, VWAP, OFI, exhaustion; docs/signals.md) come from
Helios: live from a feed thread inside this Freqtrade process, in backtesting and hyperopt from recorded L2
(user_data/orderflow/). That machinery is the base class ``HeliosBase`` (helios_orderflow/freqtrade/
strategy.py); the rule's functions are in helios_orderflow/freqtrade/rule.py. The ``helios`` section of the
config tunes the signals themselves (walls, absorption, risk; docs/strategy.md).

The thresholds below are defaults, not a tuned edge: backtest (and hyperopt: ``--spaces buy``) before
trusting them with money.
"""

import logging
import math
from datetime import datetime
from typing import Any

import talib.abstract as ta
from freqtrade.strategy import DecimalParameter, IntParameter, Trade, stoploss_from_absolute
from pandas import DataFrame

from helios_orderflow.freqtrade.rule import (
    LONG_TAG,
    SHORT_TAG,
    EntryThresholds,
    Side,
    entry_price,
    entry_rejection,
    entry_signals,
    exit_signals,
    tightened_stop,
)
from helios_orderflow.freqtrade.strategy import HeliosBase

logger = logging.getLogger(__name__)


class HeliosStrategy(HeliosBase):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    # Shorts: futures only, with helios.decision.allow_short (the base sets this from the config).
    can_short = False

    # Take profit early: order-flow setups are short-lived.
    minimal_roi = {"0": 0.01, "30": 0.005, "120": 0.0}  # noqa: RUF012 (Freqtrade reads class attributes)
    # The hard floor under every stop; custom_stoploss normally sits much closer (behind the wall).
    stoploss = -0.10
    use_custom_stoploss = True
    trailing_stop = False

    # Analyze on every loop, not only on a new candle: the newest candle gets its order flow as soon as
    # the engine has closed it, without any callback waiting for it.
    process_only_new_candles = False
    use_exit_signal = True
    startup_candle_count = 50

    # LIMIT entries at the price custom_entry_price picks (joining the book); exits LIMIT; stops MARKET.
    order_types = {  # noqa: RUF012
        "entry": "limit",
        "exit": "limit",
        "stoploss": "market",
        "stoploss_on_exchange": False,
    }
    order_time_in_force = {"entry": "GTC", "exit": "GTC"}  # noqa: RUF012

    # Hyperoptable thresholds of the entry rule (freqtrade hyperopt --spaces buy). The defaults are the
    # rule's own; helios.decision.rsi_buy_below / rsi_sell_above in the config set buy_rsi / short_rsi.
    buy_rsi = IntParameter(10, 50, default=30, space="buy")  # long: RSI below this
    short_rsi = IntParameter(50, 90, default=70, space="buy")  # short: RSI above this
    # Absorption counts when it fired in the signal candle or up to this many candles in all.
    buy_absorption_candles = IntParameter(1, 5, default=1, space="buy")
    # The protecting wall must sit more than this many basis points beyond the close (room for the stop).
    buy_wall_min_bps = DecimalParameter(0.0, 10.0, default=0.0, decimals=1, space="buy")

    # Order-flow thresholds, searched on the engine's per-candle measurements (no feature is recomputed per
    # epoch). They filter the engine's signals, so they can only make them stricter: the defaults keep every
    # signal (docs/strategy.md, "Hyperoptable order-flow thresholds").
    # Absorption counts only when sellers absorbed at least this fraction of the wall's peak size (at or below
    # the config's absorption.frac, which sets it: every absorption).
    buy_absorption_frac = DecimalParameter(0.5, 1.0, default=0.5, decimals=2, space="buy")
    # The protecting wall is at least this many times the median bin at the close (0: off) ...
    buy_wall_size_k = DecimalParameter(0.0, 6.0, default=0.0, decimals=1, space="buy")
    # ... and has stood at least this many seconds (0: any confirmed wall).
    buy_wall_min_age_s = IntParameter(0, 180, default=0, space="buy")
    # Exit on exhaustion only when volume in the move's direction fell below this fraction of its prior
    # average (the config's exhaustion.volume_frac sets it; lower is stricter).
    sell_exhaustion_volume_frac = DecimalParameter(0.1, 0.7, default=0.7, decimals=2, space="sell")
    config_parameters = {  # noqa: RUF012 (the helios config keys that set these Parameters when given)
        **HeliosBase.config_parameters,
        "buy_absorption_frac": ("absorption", "frac"),
        "sell_exhaustion_volume_frac": ("exhaustion", "volume_frac"),
    }

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=self.helios.settings.decision.rsi_period)
        # The order-flow columns of_*: live from the feed thread, otherwise from the recordings. A candle
        # the live engine has not closed yet gets neutral values (no entry) until the next loop.
        return self.add_orderflow(dataframe, metadata["pair"])

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        # An order-flow threshold at or below the engine's own setting adds nothing: it is left off (0), so a
        # row whose measurement is missing (an engine checkpoint from an older version) keeps its signal.
        frac = self.buy_absorption_frac.value
        thresholds = EntryThresholds(
            rsi_long_below=self.buy_rsi.value,
            rsi_short_above=self.short_rsi.value,
            absorption_candles=self.buy_absorption_candles.value,
            wall_min_bps=self.buy_wall_min_bps.value,
            absorption_frac=frac if frac > self.helios.settings.absorption.frac else 0.0,
            wall_size_k=self.buy_wall_size_k.value,
            wall_min_age_s=self.buy_wall_min_age_s.value,
        )
        # Absorption at a wall, RSI beyond its level, the book usable and a wall protecting the close.
        long, short = entry_signals(dataframe, thresholds, allow_short=self.can_short)
        dataframe.loc[long, ["enter_long", "enter_tag"]] = (1, LONG_TAG)
        dataframe.loc[short, ["enter_short", "enter_tag"]] = (1, SHORT_TAG)
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        if self.helios.strategy.exit_on_exhaustion:
            volume_frac = self.sell_exhaustion_volume_frac.value  # below the engine's: stricter, else off
            exit_long, exit_short = exit_signals(
                dataframe, volume_frac if volume_frac < self.helios.settings.exhaustion.volume_frac else math.inf)
            dataframe.loc[exit_long, ["exit_long", "exit_tag"]] = (1, "exhaustion_up")
            dataframe.loc[exit_short, ["exit_short", "exit_tag"]] = (1, "exhaustion_down")
        return dataframe

    def confirm_trade_entry(self, pair: str, order_type: str, amount: float, rate: float, time_in_force: str,
                            current_time: datetime, entry_tag: str | None, side: Side, **kwargs: Any) -> bool:
        """Enter only while the book still backs the signal: live, the feed's book now (backtests: the
        recorded book as of current_time) must be fresh and healthy, the spread within
        helios.strategy.max_spread_bps, and a wall must still protect a trade entered at ``rate``."""
        view = self.market_view(pair, current_time)
        reason = entry_rejection(view, side, rate, self.helios.strategy.max_spread_bps,
                                 self.helios.strategy.cross_book)
        if reason:
            logger.info("helios: entry %s %s at %.8g rejected: %s", side, pair, rate, reason)
        return not reason

    def custom_entry_price(self, pair: str, trade: Trade | None, current_time: datetime, proposed_rate: float,
                           entry_tag: str | None, side: Side, **kwargs: Any) -> float:
        """A LIMIT joining the best bid (long) or ask (short): never crossing the book unless
        helios.strategy.cross_book."""
        return entry_price(self.market_view(pair, current_time), side, self.helios.strategy.cross_book,
                           proposed_rate)

    def custom_stake_amount(self, pair: str, current_time: datetime, current_rate: float, proposed_stake: float,
                            min_stake: float | None, max_stake: float, leverage: float, entry_tag: str | None,
                            side: Side, **kwargs: Any) -> float:
        """Risk 1-2 % of equity (helios.risk.risk_fraction) between the entry and the stop behind the wall:
        stake = equity x risk / |entry - stop| x entry, within Freqtrade's stake limits."""
        stop, wall = self.stop_plan(side, current_rate, self.market_view(pair, current_time))
        return self.risk_stake(pair, side, current_rate, stop, wall, proposed_stake, min_stake, max_stake, leverage)

    def custom_stoploss(self, pair: str, trade: Trade, current_time: datetime, current_rate: float,
                        current_profit: float, after_fill: bool, **kwargs: Any) -> float | None:
        """Just behind the nearest wall that protects the trade (one tick or helios.risk.stop_buffer_bps past
        it), following the walls as they move and only ever tightening; helios.strategy.max_loss of the entry
        when no wall protects the trade."""
        side: Side = "short" if trade.is_short else "long"
        view = self.market_view(pair, current_time)
        stop = self.stored_stop(trade)
        if stop is None or after_fill:
            # The entry filled (or another entry moved the average price): the stop the stake was sized with.
            stop = self.initial_stop(trade, view)
        else:
            # Behind the wall protecting the trade now, if one does (else the stop stays), never loosening.
            candidate, wall = self.stop_plan(side, current_rate, view)
            if wall is not None:
                stop = self.move_stop(trade, tightened_stop(side, stop, candidate), wall)
        return stoploss_from_absolute(stop, current_rate, is_short=trade.is_short, leverage=trade.leverage or 1.0)
