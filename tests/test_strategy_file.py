"""user_data/strategies/HeliosStrategy.py, the strategy Freqtrade runs: the one HeliosStrategy Freqtrade finds,
its hyperoptable thresholds, the same signals as the rule has always given at their defaults, the helios
config setting them, and no waiting for a candle the live engine has not closed."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from freqtrade.resolvers import StrategyResolver
from freqtrade.strategy import DecimalParameter, IntParameter
from freqtrade.strategy.hyper import detect_all_parameters

from helios_orderflow.core.settings import HealthSettings
from helios_orderflow.emulator.synth import write_synthetic
from helios_orderflow.engine.candles import CANDLE_FIELDS, CandleFeatures
from helios_orderflow.features.compute import compute_features
from helios_orderflow.freqtrade.rule import LONG_TAG
from helios_orderflow.freqtrade.strategy import HeliosBase, HeliosStrategy
from helios_orderflow.live.health import PairHealth
from helios_orderflow.live.state import PairSnapshot, SharedState

ROOT = Path(__file__).resolve().parent.parent
STRATEGY_FILE = ROOT / "user_data" / "strategies" / "HeliosStrategy.py"
ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
ORIGIN_US = int(ORIGIN.timestamp()) * 1_000_000
MINUTES = 30
SEED = 11  # this seed's market shows bullish absorption at a protected bid wall in minutes 5, 8, 11, 16 and 17
HELIOS = {"heatmap": {"bin_size": 0.5}, "decision": {"rsi_period": 3}}


def strategy_file_class() -> type[HeliosBase]:
    """The class defined in the strategy file, loaded the way Freqtrade loads it (by file path)."""
    spec = importlib.util.spec_from_file_location("HeliosStrategy", STRATEGY_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls: type[HeliosBase] = module.HeliosStrategy
    return cls


def config(user_data: Path, runmode: str = "backtest", **helios: Any) -> dict[str, Any]:
    return {"runmode": runmode, "user_data_dir": str(user_data), "timeframe": "1m", "dry_run_wallet": 1000,
            "stake_currency": "USDT", "exchange": {"name": "binance", "pair_whitelist": ["BTC/USDT"]},
            "helios": {**HELIOS, "backtest": {"recordings": "orderflow"}, **helios}}


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ud = tmp_path_factory.mktemp("user_data")
    write_synthetic(str(ud / "orderflow" / "synth"), ["BTC/USDT"], SEED, ORIGIN_US, MINUTES * 60_000_000)
    return ud


def analyzed(strategy: HeliosBase, candles: pd.DataFrame) -> pd.DataFrame:
    meta = {"pair": "BTC/USDT"}
    df = strategy.populate_indicators(candles.copy(), meta)
    return strategy.populate_exit_trend(strategy.populate_entry_trend(df, meta), meta)


def test_freqtrade_finds_exactly_one_heliosstrategy_with_its_buy_parameters() -> None:
    found = StrategyResolver.search_all_objects(
        {"user_data_dir": ROOT / "user_data", "strategy_path": str(ROOT / "user_data" / "strategies")}, False)
    helios = {str(f["location"]) for f in found if f["name"] == "HeliosStrategy"}
    assert helios == {str(STRATEGY_FILE)}
    cls = strategy_file_class()
    params = detect_all_parameters(cls)
    assert set(params) == {"buy", "sell"}
    assert {name: (type(p), p.value) for name, p in params["buy"].items()} == {
        "buy_rsi": (IntParameter, 30), "short_rsi": (IntParameter, 70),
        "buy_absorption_candles": (IntParameter, 1), "buy_wall_min_bps": (DecimalParameter, 0.0),
        "buy_absorption_frac": (DecimalParameter, 0.5), "buy_wall_size_k": (DecimalParameter, 0.0),
        "buy_wall_min_age_s": (IntParameter, 0)}
    assert {name: (type(p), p.value) for name, p in params["sell"].items()} == {
        "sell_exhaustion_volume_frac": (DecimalParameter, 0.7)}
    assert cls.order_types["entry"] == "limit" and cls.process_only_new_candles is False
    # The package's kept name is the base the file subclasses.
    assert issubclass(cls, HeliosStrategy) and HeliosStrategy is HeliosBase


def test_at_its_defaults_the_strategy_file_gives_the_historic_signals(user_data: Path) -> None:
    candles = compute_features(user_data / "orderflow" / "synth", "BTC/USDT", "1m",
                               HeliosBase(config(user_data)).helios.settings).loc[
        :, ["date", "open", "high", "low", "close", "volume"]]
    for helios, rsi_below in (({}, 30.0), ({"decision": {"rsi_period": 3, "rsi_buy_below": 100}}, 100.0)):
        sample = strategy_file_class()(config(user_data, **helios))
        got = analyzed(sample, candles)
        # The rule as it has always traded, written out as the oracle.
        historic = ((got["of_book_ok"] == 1) & (got["of_absorption_bull"] == 1) & (got["rsi"] < rsi_below)
                    & (got["of_bid_wall_price"] < got["close"]))
        assert (got["enter_long"].fillna(0) == 1).tolist() == historic.tolist()
        assert set(got.loc[got["enter_long"] == 1, "enter_tag"]) <= {LONG_TAG}
        # The package's base class trades the same rule at the config's thresholds.
        base = analyzed(HeliosBase(config(user_data, **helios)), candles)
        pd.testing.assert_frame_equal(got, base)
    assert int(historic.sum()) >= 2  # with RSI opened up, this seed's absorption setups enter


def test_helios_config_sets_the_rsi_parameters_of_this_instance_only(user_data: Path) -> None:
    cls = strategy_file_class()
    opened = cls(config(user_data, decision={"rsi_buy_below": 45, "rsi_sell_above": 55.5}))
    plain = cls(config(user_data))
    assert (opened.buy_rsi.value, opened.short_rsi.value) == (45, 55.5)
    assert opened.buy_params == {"buy_rsi": 45, "short_rsi": 55.5}  # as Freqtrade's buy_params would
    assert (plain.buy_rsi.value, plain.short_rsi.value) == (30, 70) and not getattr(plain, "buy_params", {})
    assert cls.buy_rsi.value == 30  # the class's Parameter is untouched
    # Freqtrade's loader (parameter file > buy_params > default) keeps the config's value.
    opened.ft_load_hyper_params(hyperopt=False)
    assert opened.buy_rsi.value == 45


def _row(open_time_us: int, **values: float) -> CandleFeatures:
    """A closed candle as the engine publishes it: usable book, no signal, closing at 1000."""
    base: dict[str, Any] = {f: 0.0 for f in CANDLE_FIELDS}
    base.update(open_time_us=open_time_us, open=1000.0, high=1000.0, low=1000.0, close=1000.0, trades=0,
                mid=1000.0, spread=0.5, bid_wall_price=math.nan, bid_wall_size=math.nan, ask_wall_price=math.nan,
                ask_wall_size=math.nan, absorption_bull=0, absorption_bear=0, exhaustion_up=0, exhaustion_down=0,
                book_ok=1)
    base.update(values)
    return CandleFeatures(**base)


def test_live_candle_the_engine_has_not_closed_gets_no_entry_and_nothing_waits_for_it(
        user_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    minute = 60_000_000
    n = 20
    dates = pd.date_range(ORIGIN, periods=n, freq="1min", tz=UTC)
    closes = np.linspace(1010.0, 1000.0, n)  # falling: RSI low
    candles = pd.DataFrame({"date": dates, "open": closes, "high": closes, "low": closes, "close": closes,
                            "volume": 1.0})
    setup = {"absorption_bull": 1, "bid_wall_price": 995.0}
    # The engine has closed every candle but the newest; the two last both show the setup.
    rows = tuple(_row(ORIGIN_US + i * minute, close=float(closes[i]), **(setup if i >= n - 2 else {}))
                 for i in range(n - 1))
    state = SharedState("binance", ["BTC/USDT"], HealthSettings())
    state.publish(PairSnapshot("binance", "BTC/USDT", PairHealth(exchange="binance", symbol="BTC/USDT"),
                               history=rows, seq=1))
    cls = strategy_file_class()
    strategy = cls(config(user_data, runmode="dry_run"))
    assert strategy.is_live
    monkeypatch.setattr(cls, "shared_state", property(lambda self: state))

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"a callback slept {seconds} s")

    monkeypatch.setattr(time, "sleep", no_sleep)
    started = time.monotonic()
    first = analyzed(strategy, candles)
    assert time.monotonic() - started < 0.5  # the old code waited up to 2 s here
    assert first["of_book_ok"].tolist() == [1] * (n - 1) + [0]
    assert first["enter_long"].fillna(0).tolist() == [0] * (n - 2) + [1, 0]
    assert math.isnan(first["of_bid_wall_price"].iloc[-1]) and first["of_absorption_bull"].iloc[-1] == 0
    # The engine closes the candle; Freqtrade's next loop (process_only_new_candles is False) picks it up.
    newest = _row(ORIGIN_US + (n - 1) * minute, close=float(closes[-1]), **setup)
    state.publish(dataclasses.replace(state.get("BTC/USDT"), history=(*rows, newest), seq=2))  # type: ignore[type-var]
    second = analyzed(strategy, candles)
    assert second["of_book_ok"].tolist() == [1] * n
    assert second["enter_long"].fillna(0).tolist() == [0] * (n - 2) + [1, 1]
