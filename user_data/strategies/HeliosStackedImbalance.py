"""HeliosStackedImbalance: a stacked-imbalance strategy written for Freqtrade's own order flow, run on Helios.

The body is what a Freqtrade user writes for ``exchange.use_public_trades``: it reads Freqtrade's order-flow
columns (``stacked_imbalances_ask`` / ``_bid``, ``delta``, ``bid``, ``ask``, ``total_trades``) and nothing of
Helios. Only the base class differs: with ``HeliosStrategy`` and ``helios.strategy.freqtrade_orderflow: true``
those columns come from Helios's websocket trades (live, on any ccxt.pro venue: OKX, Gate, KuCoin, Bybit ...,
where Freqtrade's own order flow refuses to start) and from Helios recordings (backtests), with no REST trade
download; and entries, stake and stop get Helios's book checks on top (a healthy book and a tight spread
before the order, the stake sized on the stop behind the nearest wall).

Config (``exchange.use_public_trades`` stays off):

    "orderflow": {"cache_size": 1500, "max_candles": 1500, "scale": 2, "imbalance_volume": 0.1,
                  "imbalance_ratio": 3, "stacked_imbalance_range": 3},
    "helios": {"strategy": {"freqtrade_orderflow": true}}

The idea: a candle with a stack of ask imbalances (buyers lifting the offer at several consecutive prices)
that closes with positive delta starts a push up; a stack of bid imbalances with negative delta ends it. The
thresholds are an example, not a tuned edge.
"""

import logging

from pandas import DataFrame

from helios_orderflow.strategy import HeliosStrategy

logger = logging.getLogger(__name__)


def _count(cell: object) -> int:
    """Stacked imbalances in one cell: a list of prices, or NaN for a candle without trades."""
    return len(cell) if isinstance(cell, list) else 0


class HeliosStackedImbalance(HeliosStrategy):
    INTERFACE_VERSION = 3

    timeframe = "1m"
    can_short = False
    minimal_roi = {"0": 0.004, "10": 0.002, "30": 0.0}  # noqa: RUF012 (Freqtrade reads class attributes)
    stoploss = -0.01
    use_exit_signal = True
    startup_candle_count = 5

    def bot_start(self, **kwargs) -> None:
        super().bot_start(**kwargs)
        self.last_logged: dict[str, object] = {}

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["stacked_ask_count"] = dataframe["stacked_imbalances_ask"].apply(_count)
        dataframe["stacked_bid_count"] = dataframe["stacked_imbalances_bid"].apply(_count)
        dataframe["delta_ratio"] = dataframe["delta"] / (dataframe["bid"] + dataframe["ask"])
        # Live, show the newest candle's order flow once (Freqtrade analyzes every few seconds).
        last = dataframe.iloc[-1] if len(dataframe) else None
        if (last is not None and self.dp.runmode.value in ("live", "dry_run")
                and self.last_logged.get(metadata["pair"]) != last["date"]):
            self.last_logged[metadata["pair"]] = last["date"]
            logger.info("order flow %s %s: total_trades=%s delta=%.6g stacked_ask=%s stacked_bid=%s",
                        metadata["pair"], last["date"], last["total_trades"], last["delta"],
                        last["stacked_imbalances_ask"], last["stacked_imbalances_bid"])
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            (dataframe["stacked_ask_count"] > 0) & (dataframe["delta"] > 0) & (dataframe["delta_ratio"] > 0.1)
            & (dataframe["volume"] > 0),
            ["enter_long", "enter_tag"]] = (1, "stacked_ask")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[
            (dataframe["stacked_bid_count"] > 0) & (dataframe["delta"] < 0),
            ["exit_long", "exit_tag"]] = (1, "stacked_bid")
        return dataframe
