"""HeliosFreqAIStrategy: a FreqAI model trained on Helios's order flow (CVD, delta, OFI, book imbalances, walls,
VWAP and session volume profile distances) next to a few classic indicators.

The idea:

1. **Features**: ``feature_engineering_standard`` adds the per-candle order-flow columns as FreqAI features
   (``%-of_...``: docs/strategy.md, "FreqAI"), live from the feed thread inside this process and in backtests from
   the recordings (``user_data/orderflow``): the same engine on the same events, so a model sees the same values
   in both, and no value of a candle uses an event after its close. The classic indicators come from
   ``feature_engineering_expand_all`` / ``_expand_basic``, as in Freqtrade's FreqAI example.
2. **Target**: the mean close of the next ``label_period_candles`` candles over the close now, minus 1.
3. **Entry**: the model predicts a rise more than ``entry_std`` standard deviations of the training labels
   above their mean (a fall, for shorts on futures; FreqAI's ``&-s_close_mean`` / ``_std``: the threshold follows
   the market's own scale) on a row it trusts (``do_predict == 1``). Before the order the book must be usable
   (live: fresh and healthy; backtests: the recorded book at the last close) with a spread below
   ``helios.strategy.max_spread_bps``. The model is the signal here: unlike HeliosStrategy, no wall is required.
4. **Exit**: the prediction crosses the labels' mean against the trade, the ROI table, or the stop (behind the
   nearest protecting wall, else ``helios.strategy.max_loss``; the stake sized so that the stop loses 1-2 % of
   equity: the base's).

Run it: ``freqtrade backtesting --strategy HeliosFreqAIStrategy --freqaimodel LightGBMRegressor`` with a
``freqai`` section in the config (docs/strategy.md shows one). The thresholds are placeholders, not a tuned edge.
"""

import logging
from datetime import datetime
from typing import Any

import talib.abstract as ta
from pandas import DataFrame

from helios_orderflow.freqtrade.rule import Side
from helios_orderflow.freqtrade.strategy import HeliosBase

logger = logging.getLogger(__name__)


class HeliosFreqAIStrategy(HeliosBase):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False  # futures with helios.decision.allow_short: the base sets it from the config

    minimal_roi = {"0": 0.01, "60": 0.0}  # noqa: RUF012 (Freqtrade reads class attributes)
    stoploss = -0.10  # the floor; custom_stoploss (the base's) sits behind a wall or at max_loss
    use_custom_stoploss = True
    use_exit_signal = True
    # Analyze every loop: the newest candle's order flow arrives once the engine closes it (the base's reason).
    process_only_new_candles = False
    startup_candle_count = 30

    #: An entry needs a prediction this many standard deviations of the training labels beyond their mean.
    entry_std = 0.25

    plot_config = {  # noqa: RUF012
        "main_plot": {"of_vwap": {"color": "#f0b90b"}},
        "subplots": {
            "prediction": {"&-s_close": {"color": "#42a5f5"}},
            "do_predict": {"do_predict": {"color": "#8d6e63"}},
        },
    }

    # ---- features and target (FreqAI calls these) -----------------------------------------------------------

    def feature_engineering_expand_all(self, dataframe: DataFrame, period: int, metadata: dict,
                                       **kwargs: Any) -> DataFrame:
        dataframe["%-rsi-period"] = ta.RSI(dataframe, timeperiod=period)
        dataframe["%-roc-period"] = ta.ROC(dataframe, timeperiod=period)
        return dataframe

    def feature_engineering_expand_basic(self, dataframe: DataFrame, metadata: dict, **kwargs: Any) -> DataFrame:
        dataframe["%-pct-change"] = dataframe["close"].pct_change()
        return dataframe

    def feature_engineering_standard(self, dataframe: DataFrame, metadata: dict, **kwargs: Any) -> DataFrame:
        # The order flow: ~40 numeric features, no NaN, prices as distances from the close.
        return self.add_freqai_orderflow(dataframe, metadata["pair"])

    def set_freqai_targets(self, dataframe: DataFrame, metadata: dict, **kwargs: Any) -> DataFrame:
        label = self.freqai_info["feature_parameters"]["label_period_candles"]
        dataframe["&-s_close"] = (
            dataframe["close"].shift(-label).rolling(label).mean() / dataframe["close"] - 1
        )
        return dataframe

    # ---- signals --------------------------------------------------------------------------------------------

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe = self.freqai.start(dataframe, metadata, self)
        # The of_* columns too, for plots and for rules that read them (FreqAI's frame keeps only its features).
        return self.add_orderflow(dataframe, metadata["pair"])

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        trusted = dataframe["do_predict"] == 1
        prediction, mean, std = dataframe["&-s_close"], dataframe["&-s_close_mean"], dataframe["&-s_close_std"]
        dataframe.loc[trusted & (prediction > mean + self.entry_std * std),
                      ["enter_long", "enter_tag"]] = (1, "freqai_long")
        if self.can_short:
            dataframe.loc[trusted & (prediction < mean - self.entry_std * std),
                          ["enter_short", "enter_tag"]] = (1, "freqai_short")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        prediction, mean = dataframe["&-s_close"], dataframe["&-s_close_mean"]
        dataframe.loc[prediction < mean, ["exit_long", "exit_tag"]] = (1, "prediction_down")
        if self.can_short:
            dataframe.loc[prediction > mean, ["exit_short", "exit_tag"]] = (1, "prediction_up")
        return dataframe

    def confirm_trade_entry(self, pair: str, order_type: str, amount: float, rate: float, time_in_force: str,
                            current_time: datetime, entry_tag: str | None, side: Side, **kwargs: Any) -> bool:
        view = self.market_view(pair, current_time)
        if not view.ok:
            logger.info("helios: entry %s %s rejected: %s", side, pair, "; ".join(view.problems))
            return False
        if view.spread_bps > self.helios.strategy.max_spread_bps:
            logger.info("helios: entry %s %s rejected: spread %.2f bps", side, pair, view.spread_bps)
            return False
        return True
