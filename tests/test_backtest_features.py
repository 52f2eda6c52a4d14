"""Order-flow features for Freqtrade's dataframe from recordings: neutral features and one warning where there
is no recording, as-of lookups, and no look-ahead in any decision of HeliosStrategy."""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from freqtrade.persistence import LocalTrade

from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import HeliosSettings, RecordingSettings
from helios_orderflow.emulator.synth import synth_events, write_synthetic
from helios_orderflow.features.backtest import ORDERFLOW_COLUMNS, RecordedFeatures, find_recordings
from helios_orderflow.features.compute import compute_features
from helios_orderflow.freqtrade.strategy import LONG_TAG, HeliosStrategy
from helios_orderflow.recording import RecordingWriter

ORIGIN = datetime(2024, 1, 1, tzinfo=UTC)
ORIGIN_US = int(ORIGIN.timestamp()) * 1_000_000
MINUTES = 30
SEED = 11  # this seed's market shows bullish absorption at a protected bid wall in minutes 5, 8, 11, 16 and 17
HELIOS = {"heatmap": {"bin_size": 0.5}, "decision": {"rsi_buy_below": 100, "rsi_sell_above": 100, "rsi_period": 3}}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("orderflow")
    write_synthetic(str(root / "synth"), ["BTC/USDT"], SEED, ORIGIN_US, MINUTES * 60_000_000)
    return root


def strategy_for(user_data: Path, recordings: str = "orderflow", **helios: object) -> HeliosStrategy:
    config = {"runmode": "backtest", "user_data_dir": str(user_data), "timeframe": "1m", "dry_run_wallet": 1000,
              "stake_currency": "USDT", "exchange": {"name": "binance", "pair_whitelist": ["BTC/USDT"]},
              "helios": {**HELIOS, "backtest": {"recordings": recordings}, **helios}}
    return HeliosStrategy(config)


def ohlcv(features: pd.DataFrame) -> pd.DataFrame:
    """A Freqtrade-shaped candle frame from the recording's own trades."""
    return features.loc[:, ["date", "open", "high", "low", "close", "volume"]].copy()


def analyzed(strategy: HeliosStrategy, candles: pd.DataFrame, pair: str = "BTC/USDT") -> pd.DataFrame:
    meta = {"pair": pair}
    df = strategy.populate_indicators(candles.copy(), meta)
    df = strategy.populate_entry_trend(df, meta)
    return strategy.populate_exit_trend(df, meta)


def test_find_recordings_takes_the_folder_and_its_recording_subfolders(recordings: Path, tmp_path: Path) -> None:
    assert find_recordings(recordings) == [recordings / "synth"]
    assert find_recordings(recordings / "synth") == [recordings / "synth"]
    assert find_recordings(tmp_path / "missing") == []


def test_pair_without_recording_gets_neutral_features_no_entries_and_one_warning(
        recordings: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = strategy_for(recordings.parent, recordings.name)
    feats = compute_features(recordings / "synth", "BTC/USDT", "1m", s.helios.settings)
    candles = ohlcv(feats)
    with caplog.at_level(logging.WARNING):
        a = analyzed(s, candles, "ETH/USDT")
        analyzed(s, candles, "ETH/USDT")
    warnings = [r for r in caplog.records if "no order-flow recording for ETH/USDT" in r.getMessage()]
    assert len(warnings) == 1
    assert (a["of_book_ok"] == 0).all() and (a["of_absorption_bull"] == 0).all() and (a["of_delta"] == 0).all()
    assert a["of_vwap"].isna().all() and a["of_bid_wall_price"].isna().all()
    assert "enter_long" not in a or (a["enter_long"].fillna(0) == 0).all()
    assert s.recorded().as_of("ETH/USDT", ORIGIN + timedelta(minutes=10)) is None
    view = s.market_view("ETH/USDT", ORIGIN + timedelta(minutes=10))
    assert not s.confirm_trade_entry("ETH/USDT", "limit", 1.0, 60000.0, "GTC", ORIGIN + timedelta(minutes=10),
                                     LONG_TAG, "long")
    assert view.problems == ("no recorded order flow for ETH/USDT as of 2024-01-01 00:10:00",)


def test_candles_outside_the_recording_are_neutral_with_one_warning(
        recordings: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = strategy_for(recordings.parent, recordings.name)
    feats = compute_features(recordings / "synth", "BTC/USDT", "1m", s.helios.settings)
    before = pd.DataFrame({"date": pd.date_range(ORIGIN - timedelta(minutes=20), periods=20, freq="1min", tz=UTC)})
    for c in ("open", "high", "low", "close"):
        before[c] = 60000.0
    before["volume"] = 1.0
    candles = pd.concat([before, ohlcv(feats)], ignore_index=True)
    with caplog.at_level(logging.WARNING):
        a = analyzed(s, candles)
        analyzed(s, candles)
    partial = [r for r in caplog.records if "have no recorded order flow" in r.getMessage()]
    assert len(partial) == 1 and f"20 of {20 + len(feats)} 1m candles of BTC/USDT" in partial[0].getMessage()
    assert (a["of_book_ok"].iloc[:20] == 0).all()
    assert a["of_cvd"].iloc[20:].to_numpy() == pytest.approx(feats["cvd"].to_numpy())
    # The recorded candles keep their signals: this seed shows absorption setups.
    assert int(a["enter_long"].fillna(0).sum()) >= 2
    assert set(a.loc[a["enter_long"] == 1, "enter_tag"]) == {LONG_TAG}


def test_as_of_returns_the_last_candle_closed_at_or_before_the_time(recordings: Path) -> None:
    s = strategy_for(recordings.parent, recordings.name)
    rf: RecordedFeatures = s.recorded()
    frame = rf.frame("BTC/USDT")
    assert rf.as_of("BTC/USDT", ORIGIN + timedelta(seconds=59)) is None  # the first candle is still open
    first = rf.as_of("BTC/USDT", ORIGIN + timedelta(minutes=1))
    assert first is not None and first["of_cvd"] == frame["of_cvd"].iloc[0]
    row = rf.as_of("BTC/USDT", ORIGIN + timedelta(minutes=10, seconds=30))
    assert row is not None and row["open_time_us"] == ORIGIN_US + 9 * 60_000_000
    assert row["of_cvd"] == frame["of_cvd"].iloc[9]


def _changed_after(root: Path, cut_us: int) -> Path:
    """The same market up to ``cut_us``; afterwards every trade doubled and shifted and every book
    message from a different seed's market (events after T changed)."""
    out = root / "changed"
    with RecordingWriter(out / "synth", RecordingSettings(), flush_by_time=False) as w:
        for ev in synth_events(["BTC/USDT"], SEED, ORIGIN_US, MINUTES * 60_000_000):
            if ev.ts_us < cut_us:
                w.write(ev)
            elif type(ev) is Trade:
                w.write(dataclasses.replace(ev, amount=ev.amount * 3, price=ev.price - 40.0,
                                            side="sell" if ev.side == "buy" else "buy"))
            else:
                w.write(ev)
    return out


def test_changing_events_after_t_leaves_every_decision_before_t_unchanged(recordings: Path,
                                                                          tmp_path: Path) -> None:
    cut = ORIGIN + timedelta(minutes=12, seconds=17)
    cut_us = int(cut.timestamp() * 1_000_000)
    changed_root = _changed_after(tmp_path, cut_us)
    a = strategy_for(recordings.parent, recordings.name)
    b = strategy_for(changed_root.parent, changed_root.name)
    fa = compute_features(recordings / "synth", "BTC/USDT", "1m", a.helios.settings)
    fb = compute_features(changed_root / "synth", "BTC/USDT", "1m", b.helios.settings)
    da, db = analyzed(a, ohlcv(fa)), analyzed(b, ohlcv(fb))
    closed = (da["date"] + pd.Timedelta(minutes=1)) <= pd.Timestamp(cut)
    assert int(closed.sum()) == 12
    cols = [*ORDERFLOW_COLUMNS, "rsi", "enter_long", "enter_tag", "exit_long"]
    left = da.loc[closed, cols].reset_index(drop=True)
    right = db.loc[closed, cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)
    assert left["enter_long"].fillna(0).sum() >= 2  # decisions that could have changed, and did not
    # The change is real: candles closing after T differ.
    assert not np.allclose(da["of_cvd"][~closed].to_numpy(), db["of_cvd"][~closed].to_numpy(), equal_nan=True)
    # Every callback before T answers the same (each minute, and detail times inside the minute).
    trade_a = LocalTrade(pair="BTC/USDT", open_rate=float(fa["close"].iloc[2]), amount=0.01, stake_amount=600.0,
                         open_date=ORIGIN + timedelta(minutes=3), fee_open=0.0, fee_close=0.0, exchange="binance",
                         is_short=False, leverage=1.0)
    trade_b = LocalTrade(pair="BTC/USDT", open_rate=trade_a.open_rate, amount=0.01, stake_amount=600.0,
                         open_date=trade_a.open_date, fee_open=0.0, fee_close=0.0, exchange="binance",
                         is_short=False, leverage=1.0)
    when = ORIGIN + timedelta(minutes=1)
    answers = 0
    confirmed = 0
    while when <= cut:
        rate = float(fa.loc[fa["date"] < pd.Timestamp(when), "close"].iloc[-1])
        for s, trade in ((a, trade_a), (b, trade_b)):
            s._answers = (  # type: ignore[attr-defined]
                s.market_view("BTC/USDT", when),
                s.confirm_trade_entry("BTC/USDT", "limit", 0.01, rate, "GTC", when, LONG_TAG, "long"),
                s.custom_entry_price("BTC/USDT", None, when, rate, LONG_TAG, "long"),
                s.custom_stake_amount("BTC/USDT", when, rate, 500.0, 5.0, 990.0, 1.0, LONG_TAG, "long"),
                s.custom_stoploss("BTC/USDT", trade, when, rate, 0.0, after_fill=False),
            )
        assert a._answers == b._answers, when  # type: ignore[attr-defined]
        answers += 1
        confirmed += a._answers[1]  # type: ignore[attr-defined]
        when += timedelta(seconds=20)
    assert answers == 34  # 00:01:00 to 00:12:00 every 20 s
    assert 0 < confirmed < answers  # some entries confirmed, some rejected: the answers carry information
    assert not math.isnan(a._answers[2])  # type: ignore[attr-defined]


def test_strategy_pickles_without_live_state_and_keeps_working(recordings: Path) -> None:
    import pickle

    s = strategy_for(recordings.parent, recordings.name)
    feats = compute_features(recordings / "synth", "BTC/USDT", "1m", s.helios.settings)
    first = analyzed(s, ohlcv(feats))
    clone = pickle.loads(pickle.dumps(s))
    assert clone.recorded()._frames == {}  # frames are reloaded from the disk cache, not shipped
    again = analyzed(clone, ohlcv(feats))
    pd.testing.assert_frame_equal(first, again)


def test_settings_change_is_a_different_cache_entry(recordings: Path) -> None:
    half = HeliosSettings.from_dict({"heatmap": {"bin_size": 0.5}})
    a = compute_features(recordings / "synth", "BTC/USDT", "1m", half)
    b = compute_features(recordings / "synth", "BTC/USDT", "1m", HeliosSettings())
    assert a.attrs["helios_cache_path"] != b.attrs["helios_cache_path"]


@pytest.mark.parametrize("cached", [False, True])
def test_a_feature_request_walks_each_recordings_folders_once(recordings: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, cached: bool) -> None:
    from helios_orderflow.recording import reader

    walks: list[Path] = []
    real = reader._streams

    def counting(base: Path) -> object:
        walks.append(base)
        return real(base)

    monkeypatch.setattr(reader, "_streams", counting)
    cache_dir = tmp_path / "cache"
    if cached:  # fill the cache first: a hit reads the cache key from the same single walk
        compute_features(recordings / "synth", "BTC/USDT", "1m", cache_dir=cache_dir)
        walks.clear()
    rf = RecordedFeatures(recordings, "binance", "1m")
    frame = compute_features(reader.index_recording(recordings / "synth"), "BTC/USDT", "1m", cache_dir=cache_dir)
    assert frame.attrs["helios_cache"] == ("hit" if cached else "miss")
    assert walks == [recordings / "synth"]  # lookup, cache key and read: one walk
    walks.clear()
    assert len(rf.frame("BTC/USDT")) == MINUTES + 1  # 30 closed candles and the one open at the end
    assert walks == [recordings / "synth"]
