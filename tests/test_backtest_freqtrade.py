"""Real ``freqtrade backtesting`` (and hyperopt) of HeliosStrategy on a synthetic recording of >= 6 h.

Pipeline, as a user runs it: ``helios synth`` -> ``helios export-trades`` -> ``freqtrade trades-to-ohlcv`` ->
``freqtrade backtesting``. Freqtrade loads markets even in backtesting, so a local exchange serves them.
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from helios_orderflow.emulator.process import ExchangeProcess, start_subprocess
from helios_orderflow.emulator.server import ccxt_config
from helios_orderflow.features.compute import compute_features
from helios_orderflow.freqtrade.config import read_section
from helios_orderflow.freqtrade.strategy import LONG_TAG
from tests.commands import run_ok

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = [sys.executable, "-m", "freqtrade"]
HOURS = 6
SEED = 7

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> str:
    return run_ok(cmd, cwd, timeout)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExchangeProcess]:
    log = tmp_path_factory.mktemp("exchange") / "exchange.log"
    with start_subprocess(["--synthetic", "--symbols", "BTC/USDT", "ETH/USDT", "--history-minutes", "10"],
                          log) as ex:
        yield ex


@pytest.fixture(scope="module")
def userdir(tmp_path_factory: pytest.TempPathFactory, exchange: ExchangeProcess) -> Path:
    """A Freqtrade user_data dir with a 6 h synthetic BTC/USDT recording, its trades and 1m/5m candles."""
    ud = tmp_path_factory.mktemp("user_data")
    (ud / "strategies").mkdir()
    shutil.copy(ROOT / "user_data" / "strategies" / "HeliosStrategy.py", ud / "strategies")
    rec = ud / "orderflow" / "synth"
    run([sys.executable, "-m", "helios_orderflow.cli", "synth", "--symbols", "BTC/USDT", "--hours", str(HOURS),
         "--seed", str(SEED), "--out", str(rec)], ROOT)
    out = run([sys.executable, "-m", "helios_orderflow.cli", "export-trades", str(rec), "--datadir",
               str(ud / "data" / "binance")], ROOT)
    assert "BTC/USDT" in out
    config = json.loads((ROOT / "user_data" / "config.backtest.json").read_text())
    config["exchange"]["ccxt_config"] = ccxt_config(exchange.url)
    # RSI 50 / 50 (the example config keeps the defaults, 30 / 70): entries often enough in 6 hours to check each
    config["helios"]["decision"] = {"rsi_buy_below": 50, "rsi_sell_above": 50}
    # ETH/USDT has no recording: it must get one warning and neutral features, no trades, no crash.
    config["exchange"]["pair_whitelist"] = ["BTC/USDT", "ETH/USDT"]
    (ud / "config.json").write_text(json.dumps(config))
    run([*FREQTRADE, "trades-to-ohlcv", "--config", str(ud / "config.json"), "--userdir", str(ud),
         "-p", "BTC/USDT", "-t", "1m", "5m"], ud)
    # ETH/USDT candles without any ETH recording (BTC's candles scaled): Freqtrade backtests the pair, Helios
    # must warn once and give it neutral order flow.
    for tf in ("1m", "5m"):
        btc = pd.read_feather(ud / "data" / "binance" / f"BTC_USDT-{tf}.feather")
        for col in ("open", "high", "low", "close"):
            btc[col] = btc[col] / 20.0
        btc.to_feather(ud / "data" / "binance" / f"ETH_USDT-{tf}.feather")
    return ud


def backtest(ud: Path, *extra: str) -> tuple[pd.DataFrame, str]:
    out = run([*FREQTRADE, "backtesting", "--config", str(ud / "config.json"), "--userdir", str(ud),
               "--strategy", "HeliosStrategy", "--export", "trades", "--cache", "none", *extra], ud)
    last = json.loads((ud / "backtest_results" / ".last_result.json").read_text())["latest_backtest"]
    with zipfile.ZipFile(ud / "backtest_results" / last) as z:
        name = next(n for n in z.namelist() if n.endswith(".json") and "_config" not in n and "meta" not in n)
        result = json.loads(z.read(name))
    trades = pd.DataFrame(result["strategy"]["HeliosStrategy"]["trades"])
    return trades, out


def test_exported_trades_give_freqtrade_candles_matching_the_engines_ohlcv(userdir: Path) -> None:
    """Freqtrade buckets trades by exchange time; the engine counts a trade that arrives after its candle
    closed (the synthetic exchange publishes trades on a 100 ms grid) in the candle open on arrival
    (candles.py). So total volume is equal exactly and only a sliver of it changes candle."""
    candles = pd.read_feather(userdir / "data" / "binance" / "BTC_USDT-1m.feather")
    settings = read_section(json.loads((userdir / "config.json").read_text())["helios"])[0]
    feats = compute_features(userdir / "orderflow" / "synth", "BTC/USDT", "1m", settings)
    merged = candles.merge(feats, on="date", suffixes=("_ft", "_of"))
    assert len(merged) == len(candles) == HOURS * 60
    assert candles["volume"].sum() == pytest.approx(feats["volume"].sum(), rel=1e-12)
    moved = (merged["volume_ft"] - merged["volume_of"]).abs().sum() / merged["volume_of"].sum()
    assert moved < 0.01
    assert ((merged["close_ft"] - merged["close_of"]).abs() / merged["close_of"] < 1e-4).all()


def test_backtesting_a_6h_recording_yields_trades_each_with_an_enter_tag(userdir: Path) -> None:
    trades, out = backtest(userdir)
    assert len(trades) >= 5, out[-3000:]
    assert set(trades["pair"]) == {"BTC/USDT"}
    assert (trades["enter_tag"] == LONG_TAG).all()
    # Stake follows the risk rule or the max-stake cap, and every stop sat below the entry.
    assert (trades["stake_amount"] > 0).all()
    assert (trades["initial_stop_loss_abs"] < trades["open_rate"]).all(), trades[["open_rate", "initial_stop_loss_abs"]]
    assert out.count("no order-flow recording for ETH/USDT") == 1, out[-3000:]
    # Entries happen only where the recorded features say absorption at a protected bid wall.
    settings = read_section(json.loads((userdir / "config.json").read_text())["helios"])[0]
    feats = compute_features(userdir / "orderflow" / "synth", "BTC/USDT", "1m", settings).set_index("date")
    for open_date in pd.to_datetime(trades["open_date"], utc=True):
        signal = feats.loc[open_date - pd.Timedelta(minutes=1)]
        assert signal["absorption_bull"] == 1 and signal["bid_wall_price"] < signal["close"]


def test_timeframe_detail_runs_and_still_trades(userdir: Path) -> None:
    trades, out = backtest(userdir, "--timeframe", "5m", "--timeframe-detail", "1m")
    assert "Traceback" not in out
    assert len(trades) >= 1, out[-3000:]
    assert (trades["enter_tag"] == LONG_TAG).all()
    # With 1m detail candles Freqtrade may enter at any detail candle of the 5m candle after the signal; the
    # signal is the previous closed 5m candle's, and confirm_trade_entry saw the state as of the detail time.
    settings = read_section(json.loads((userdir / "config.json").read_text())["helios"])[0]
    feats = compute_features(userdir / "orderflow" / "synth", "BTC/USDT", "5m", settings).set_index("date")
    opens = pd.to_datetime(trades["open_date"], utc=True)
    assert (opens.dt.minute % 5 != 0).any()  # some entries at detail times
    for open_date in opens:
        signal = feats.loc[open_date.floor("5min") - pd.Timedelta(minutes=5)]
        assert signal["absorption_bull"] == 1 and signal["bid_wall_price"] < signal["close"]


def test_hyperopt_runs_so_the_strategy_pickles(userdir: Path) -> None:
    out = run([*FREQTRADE, "hyperopt", "--config", str(userdir / "config.json"), "--userdir", str(userdir),
               "--strategy", "HeliosStrategy", "--hyperopt-loss", "SharpeHyperOptLoss", "--spaces", "roi",
               "stoploss", "-e", "4", "-j", "2", "--disable-param-export"], userdir, timeout=600)
    assert "Best result" in out or "No good result found" in out or "epochs" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
