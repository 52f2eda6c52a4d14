"""FreqAI on Helios's order flow: the ``%-of_...`` features (no NaN, no look-ahead through the real recording ->
RecordedFeatures -> dataframe path), and a real ``freqtrade backtesting --strategy HeliosFreqAIStrategy
--freqaimodel LightGBMRegressor`` on a synthetic recording that trains a model and produces trades."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _book_trades_stream import book_and_trades
from freqtrade.data.history.datahandlers import get_datahandler
from freqtrade.enums import CandleType

from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.emulator.process import start_subprocess
from helios_orderflow.emulator.server import ccxt_config
from helios_orderflow.features.backtest import RecordedFeatures
from helios_orderflow.features.compute import compute_features
from helios_orderflow.features.freqai import FREQAI_COLUMNS, freqai_features
from helios_orderflow.freqtrade.config import read_section
from helios_orderflow.recording.writer import RecordingWriter

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = [sys.executable, "-m", "freqtrade"]
EXCHANGE = "binance"
PAIR = "BTC/USDT"
MINUTE_US = 60_000_000


def write_recording(root: Path, events: list[Event]) -> Path:
    # one file per table and UTC day (the default closes a file every 60 s: a day of data would be 1,440 files)
    with RecordingWriter(root, RecordingSettings(segment_s=86_400.0), flush_by_time=False) as w:
        for ev in events:
            w.write(ev)
    return root


def test_freqai_features_are_numeric_without_nan_and_prices_become_distances_from_the_close() -> None:
    frame = pd.DataFrame({"date": pd.to_datetime([0, 60], unit="s", utc=True), "close": [100.0, 200.0]})
    of = {f"of_{c}": [np.nan, np.nan] for c in (
        "volume", "trades", "buy_volume", "sell_volume", "delta", "cvd", "ofi", "ofi_multi", "depth_imbalance",
        "queue_imbalance", "bid_wall_size", "ask_wall_size", "absorption_bull", "absorption_bear", "exhaustion_up",
        "exhaustion_down", "book_ok", "had_book", "vwap", "vwap_upper_1", "vwap_lower_1", "vwap_upper_2",
        "vwap_lower_2", "weighted_mid", "bid_wall_price", "ask_wall_price", "session_poc", "session_vah",
        "session_val", "prev_session_poc", "prev_session_vah", "prev_session_val", "spread", "mid",
        "absorption_bull_frac", "absorption_bear_frac", "exhaustion_up_volume_ratio", "exhaustion_down_volume_ratio",
        "bid_wall_size_k", "ask_wall_size_k", "bid_wall_age_s", "ask_wall_age_s")}
    of.update(of_vwap=[101.0, np.nan], of_volume=[4.0, 0.0], of_delta=[-1.0, 0.0], of_bid_wall_price=[99.0, np.nan],
              of_spread=[0.02, np.nan], of_mid=[100.0, np.nan], of_book_ok=[1.0, 0.0])
    out = freqai_features(frame.assign(**of))
    assert list(out.columns) == ["date", "close", *FREQAI_COLUMNS]
    assert not out.isna().any().any()
    row = out.iloc[0]
    assert row["%-of_vwap_dist"] == pytest.approx(0.01)
    assert row["%-of_bid_wall_price_dist"] == pytest.approx(-0.01) and row["%-of_has_bid_wall"] == 1.0
    assert row["%-of_delta_ratio"] == -0.25 and row["%-of_spread_bps"] == pytest.approx(2.0)
    # a candle without book, wall or trades: zeros, and the flags say so
    assert (out.iloc[1][list(FREQAI_COLUMNS)] == 0).all()


def test_no_look_ahead_freqai_features_before_t_do_not_change_when_events_after_t_change(tmp_path: Path) -> None:
    """Two recordings equal up to T = 37.5 min and different after it (another market from T on) give the same
    FreqAI features, through RecordedFeatures (what backtesting uses), for every candle closed by T."""
    start = 1_704_067_200_000_000
    t_us = start + 37 * MINUTE_US + 30_000_000
    events = book_and_trades(EXCHANGE, PAIR, start, minutes=60, book_every_us=1_000_000, depth=10)
    other = book_and_trades(EXCHANGE, PAIR, t_us, minutes=23, book_every_us=1_000_000, depth=10, seed=11,
                            trades_per_update=4.0)
    a = write_recording(tmp_path / "a" / "rec", events)
    b = write_recording(tmp_path / "b" / "rec", [e for e in events if e.ts_us < t_us] + other)
    feats_a = compute_features(a, PAIR, "1m", cache=False)
    candles = feats_a[["date", "open", "high", "low", "close", "volume"]]
    fa = freqai_features(RecordedFeatures(a.parent, EXCHANGE, "1m").merge(candles, PAIR))
    fb = freqai_features(RecordedFeatures(b.parent, EXCHANGE, "1m").merge(candles, PAIR))
    closed = (fa["date"] + pd.Timedelta(minutes=1)) <= pd.Timestamp(t_us, unit="us", tz="UTC")
    assert closed.sum() == 37
    pd.testing.assert_frame_equal(fa[closed], fb[closed])
    # ... and the features do change after T (the test can tell)
    assert not fa[~closed][list(FREQAI_COLUMNS)].equals(fb[~closed][list(FREQAI_COLUMNS)])
    assert fa.loc[closed, "%-of_book_ok"].all() and fa.loc[closed, "%-of_vwap_dist"].abs().gt(0).any()


@pytest.mark.slow
@pytest.mark.integration
def test_freqai_backtesting_trains_lightgbm_on_the_order_flow_and_produces_trades(tmp_path: Path) -> None:
    """28 h of synthetic book + trades (a book update every 5 s, 5 levels, trending spells): FreqAI trains
    LightGBMRegressor on the first day (train_period_days 1) and backtests the last 3 h. Kept small: one model,
    1440 training rows."""
    ud = tmp_path / "user_data"
    (ud / "strategies").mkdir(parents=True)
    shutil.copy(ROOT / "user_data" / "strategies" / "HeliosFreqAIStrategy.py", ud / "strategies")
    start = 1_704_063_600_000_000  # 2023-12-31 23:00 UTC
    rec = write_recording(ud / "orderflow" / "synth", book_and_trades(
        EXCHANGE, PAIR, start, minutes=28 * 60, book_every_us=5_000_000, depth=5, trades_per_update=3.0,
        momentum=0.95))
    config = json.loads((ROOT / "user_data" / "config.backtest.json").read_text())
    # Freqtrade's candles: the engine's OHLCV, written by Freqtrade's own data handler. Computed with the config's
    # settings and cached, so the backtest reads this very feature table from the cache.
    feats = compute_features(rec, PAIR, "1m", read_section(config["helios"])[0])
    feats = feats.iloc[:-1]  # the last candle is still open
    candles = feats.loc[feats["open"].notna(), ["date", "open", "high", "low", "close", "volume"]]
    datadir = ud / "data" / EXCHANGE
    datadir.mkdir(parents=True)
    get_datahandler(datadir, "feather").ohlcv_store(PAIR, "1m", candles.reset_index(drop=True), CandleType.SPOT)

    config["freqai"] = {
        "enabled": True,
        "identifier": "helios-freqai-test",
        "train_period_days": 1,
        "backtest_period_days": 1,
        "live_retrain_hours": 0,
        "feature_parameters": {
            "include_timeframes": ["1m"],
            "include_corr_pairlist": [],
            "label_period_candles": 10,
            "include_shifted_candles": 0,
            "indicator_periods_candles": [10],
            "DI_threshold": 0,
            "weight_factor": 0,
            "principal_component_analysis": False,
            "use_SVM_to_remove_outliers": False,
        },
        "data_split_parameters": {"test_size": 0.25, "shuffle": False},
        "model_training_parameters": {"n_estimators": 50, "verbosity": -1, "n_jobs": 1},
    }
    config["max_open_trades"] = 1
    log = tmp_path / "exchange.log"
    with start_subprocess(["--synthetic", "--symbols", PAIR, "--history-minutes", "10"], log) as ex:
        config["exchange"]["ccxt_config"] = ccxt_config(ex.url)
        (ud / "config.json").write_text(json.dumps(config))
        proc = subprocess.run(
            [*FREQTRADE, "backtesting", "--config", str(ud / "config.json"), "--userdir", str(ud),
             "--strategy", "HeliosFreqAIStrategy", "--freqaimodel", "LightGBMRegressor",
             "--timerange", "1704153600-1704164400",  # 2024-01-02 00:00 to 03:00 UTC
             "--export", "trades", "--cache", "none"],
            cwd=ud, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    last = json.loads((ud / "backtest_results" / ".last_result.json").read_text())["latest_backtest"]
    with zipfile.ZipFile(ud / "backtest_results" / last) as z:
        name = next(n for n in z.namelist() if n.endswith(".json") and "_config" not in n and "meta" not in n)
        result = json.loads(z.read(name))
    trades = pd.DataFrame(result["strategy"]["HeliosFreqAIStrategy"]["trades"])
    assert len(trades) >= 5, out[-4000:]
    assert set(trades["enter_tag"]) == {"freqai_long"}
    assert (pd.to_datetime(trades["open_date"], utc=True) >= pd.Timestamp("2024-01-02", tz="UTC")).all()
    # the model was trained on the order-flow features (FreqAI keeps its training feature list with the model)
    metadata = next((ud / "models" / "helios-freqai-test").rglob("*_metadata.json"))
    features = json.loads(metadata.read_text())["training_features_list"]
    assert {f for f in features if f.startswith("%-of_")} == set(FREQAI_COLUMNS)
