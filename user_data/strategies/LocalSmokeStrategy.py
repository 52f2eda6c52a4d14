"""A minimal strategy for a Freqtrade dry-run against the local exchange (``helios exchange``).

It exists to prove the plumbing (markets, candles, tickers, order book pricing, dry-run fills) before
HeliosStrategy does: it buys on a short EMA crossing above a longer one and leaves on small ROI.
Not a trading idea.
"""

from datetime import datetime

import talib.abstract as ta
from freqtrade.strategy import IStrategy
from pandas import DataFrame


class LocalSmokeStrategy(IStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    minimal_roi = {"0": 0.002, "10": 0.001, "30": 0}  # noqa: RUF012 (Freqtrade reads class attributes)
    stoploss = -0.01
    trailing_stop = False
    process_only_new_candles = True
    startup_candle_count = 200
    can_short = False

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["ema_fast"] = ta.EMA(dataframe, timeperiod=5)
        dataframe["ema_slow"] = ta.EMA(dataframe, timeperiod=20)
        dataframe["rsi"] = ta.RSI(dataframe, timeperiod=14)
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            (dataframe["ema_fast"] > dataframe["ema_slow"]) & (dataframe["rsi"] < 75) & (dataframe["volume"] > 0),
            "enter_long",
        ] = 1
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["ema_fast"] < dataframe["ema_slow"], "exit_long"] = 1
        return dataframe

    def confirm_trade_entry(self, pair: str, order_type: str, amount: float, rate: float, time_in_force: str,
                            current_time: datetime, entry_tag: str | None, side: str, **kwargs) -> bool:
        # the rate comes from the local exchange's order book: it must be a real price
        return rate > 0
