"""The feature table on the real BTCUSDT stream: deltas sum to the checked CVD, VWAP is the trades' VWAP, and
cutting the recording at T leaves every candle that closed before T unchanged (no look-ahead)."""

from __future__ import annotations

from pathlib import Path

import _btcusdt
import pandas as pd
import pytest

from helios_orderflow.features.compute import compute_features
from helios_orderflow.recording import RecordingWriter

MINUTE_US = 60_000_000


def _open_us(frame: pd.DataFrame) -> pd.Series:
    return frame["date"].astype("datetime64[us, UTC]").astype("int64")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec_real")
    w = RecordingWriter(root, flush_by_time=False)
    w.write_many(_btcusdt.events())
    w.close()
    return root


@pytest.fixture(scope="module")
def full(recording: Path) -> pd.DataFrame:
    return compute_features(recording, "BTC/USDT", "1m", cache=False)


def test_per_candle_deltas_sum_to_the_recordings_cvd(full: pd.DataFrame) -> None:
    assert full["delta"].sum() == pytest.approx(_btcusdt.CVD, abs=1e-6)
    assert full["trades"].sum() == _btcusdt.TRADES
    assert full["cvd_total"].iloc[-1] == pytest.approx(_btcusdt.CVD, abs=1e-6)
    assert (full["buy_volume"] - full["sell_volume"] - full["delta"]).abs().max() < 1e-12


def test_vwap_is_the_session_trades_vwap(full: pd.DataFrame) -> None:
    midnight = 1723161600_000_000  # the session restarts at 00:00 UTC, inside the stream
    trades = [t for t in _btcusdt.trades() if t.ts_us >= midnight]
    want = sum(t.price * t.amount for t in trades) / sum(t.amount for t in trades)
    assert full["vwap"].iloc[-1] == pytest.approx(want, rel=1e-12)
    before = [t for t in _btcusdt.trades() if t.ts_us < midnight]
    want_before = sum(t.price * t.amount for t in before) / sum(t.amount for t in before)
    last_before = full[full["date"] < pd.Timestamp(midnight, unit="us", tz="UTC")].iloc[-1]
    assert last_before["vwap"] == pytest.approx(want_before, rel=1e-12)
    assert (full["vwap_lower_2"] <= full["vwap_lower_1"]).all() and (full["vwap_lower_1"] <= full["vwap"]).all()
    assert (full["vwap"] <= full["vwap_upper_1"]).all() and (full["vwap_upper_1"] <= full["vwap_upper_2"]).all()


@pytest.mark.parametrize("offset_us", [5 * MINUTE_US + 30_000_000, 8 * MINUTE_US + 200_000])
def test_a_recording_cut_at_t_gives_the_same_candles_before_t(recording: Path, full: pd.DataFrame,
                                                            offset_us: int) -> None:
    start = int(full["date"].iloc[0].value // 1000)
    t_cut = start + offset_us
    cut = compute_features(recording, "BTC/USDT", "1m", end_us=t_cut, cache=False)
    closes = _open_us(cut) + MINUTE_US
    before = cut[closes <= t_cut]
    assert len(before) == offset_us // MINUTE_US >= 5
    pd.testing.assert_frame_equal(before, full.iloc[: len(before)])
    # the candle open at T is partial in the cut (it saw less), so it differs from the whole recording's
    assert cut["volume"].iloc[-1] < full["volume"].iloc[len(before)]


def test_changing_events_after_t_changes_nothing_before_t() -> None:
    events = list(_btcusdt.events())
    t_cut = events[0].ts_us + 6 * MINUTE_US
    # double every trade's size after T: candles closed before T must not move
    from dataclasses import replace

    from helios_orderflow.core.events import Trade

    altered = [replace(e, amount=e.amount * 2) if type(e) is Trade and e.ts_us >= t_cut else e for e in events]
    a = compute_features(events, "BTC/USDT")
    b = compute_features(altered, "BTC/USDT")
    closes = _open_us(a) + MINUTE_US
    n = int((closes <= t_cut).sum())
    assert n >= 5
    pd.testing.assert_frame_equal(a.iloc[:n], b.iloc[:n])
    assert not a.iloc[n:]["volume"].equals(b.iloc[n:]["volume"])
