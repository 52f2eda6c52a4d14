"""compute_features: the frame's shape, the Parquet cache keyed by content and settings, and ``helios features``."""

from __future__ import annotations

from pathlib import Path

import _btcusdt
import pandas as pd
import pytest

from helios_orderflow.cli.main import main
from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import HeliosSettings, WallSettings
from helios_orderflow.features.compute import FEATURE_COLUMNS, compute_features
from helios_orderflow.recording import RecordingWriter


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec")
    w = RecordingWriter(root, flush_by_time=False)
    w.write_many(_btcusdt.events())
    w.close()
    return root


def test_frame_is_shaped_like_freqtrades() -> None:
    df = compute_features(_btcusdt.events(), "BTC/USDT", "1m")
    assert tuple(df.columns) == FEATURE_COLUMNS
    assert str(df["date"].dt.tz) == "UTC"
    assert df["date"].iloc[0] == pd.Timestamp("2024-08-08T23:54:00Z")
    assert len(df) == 12  # 11 closed candles + the one open when the stream ends (00:05)
    assert df["date"].diff().dropna().eq(pd.Timedelta(minutes=1)).all()
    assert df["trades"].dtype == "int64" and df["volume"].dtype == "float64"
    assert df.attrs["helios_cache"] == "off"
    closed = compute_features(_btcusdt.events(), "BTC/USDT", "1m", include_partial=False)
    pd.testing.assert_frame_equal(closed, df.iloc[:-1], check_like=False)
    five = compute_features(_btcusdt.events(), "BTC/USDT", "5m")
    assert list(five["date"].dt.minute) == [50, 55, 0, 5]
    assert five["delta"].sum() == pytest.approx(df["delta"].sum(), abs=1e-9)


def test_recording_features_equal_the_event_features_and_are_cached(recording: Path) -> None:
    direct = compute_features(_btcusdt.events(), "BTC/USDT", "1m")
    first = compute_features(recording, "BTC/USDT", "1m")
    assert first.attrs["helios_cache"] == "miss"
    pd.testing.assert_frame_equal(first, direct)
    cached = list((recording / ".cache" / "features").glob("*.parquet"))
    assert len(cached) == 1
    second = compute_features(recording, "BTC/USDT", "1m")
    assert second.attrs["helios_cache"] == "hit"
    pd.testing.assert_frame_equal(second, direct)
    # another setting of the engine, or another timeframe, is another cache entry
    other = compute_features(recording, "BTC/USDT", "1m", HeliosSettings(walls=WallSettings(size_k=4.0)))
    assert other.attrs["helios_cache"] == "miss"
    assert compute_features(recording, "BTC/USDT", "5m").attrs["helios_cache"] == "miss"
    # settings the engine does not use (risk, decision) share the entry
    from helios_orderflow.core.settings import RiskSettings

    same = compute_features(recording, "BTC/USDT", "1m", HeliosSettings(risk=RiskSettings(risk_fraction=0.02)))
    assert same.attrs["helios_cache"] == "hit"


def test_a_damaged_cache_file_is_recomputed(recording: Path, tmp_path: Path) -> None:
    first = compute_features(recording, "BTC/USDT", "1m", cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.parquet")
    path.write_bytes(b"not parquet")
    again = compute_features(recording, "BTC/USDT", "1m", cache_dir=tmp_path)
    assert again.attrs["helios_cache"] == "miss"
    pd.testing.assert_frame_equal(first, again)


def test_unknown_stream_names_what_the_recording_has(recording: Path) -> None:
    with pytest.raises(HeliosError, match="binance BTC/USDT"):
        compute_features(recording, "ETH/USDT")


def test_cli_writes_csv_and_parquet_and_prints_a_summary(recording: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f.csv"
    assert main(["features", str(recording), "--timeframe", "1m", "--out", str(out), "--no-cache"]) == 0
    text = capsys.readouterr().out
    assert "binance BTC/USDT 1m: 12 candles" in text and "delta sum -28.93328" in text
    csv = pd.read_csv(out)
    assert list(csv.columns) == list(FEATURE_COLUMNS) and len(csv) == 12
    pq = tmp_path / "f.parquet"
    assert main(["features", str(recording), "--symbol", "BTC/USDT", "--out", str(pq),
                 "--start", "2024-08-09T00:00"]) == 0
    df = pd.read_parquet(pq)
    assert df["date"].iloc[0] == pd.Timestamp("2024-08-09T00:00Z") and len(df) == 6


def test_cli_refuses_bad_input_with_a_message(recording: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", str(recording), "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .parquet or .csv" in capsys.readouterr().err
    assert main(["features", str(tmp_path / "missing")]) == 2
    assert main(["features", str(recording), "--timeframe", "7q"]) == 2


def test_live_engine_with_heatmap_gives_the_same_candles_as_compute_features() -> None:
    # SharedState runs the engine with the heatmap on; compute_features turns it off: no feature may change.
    from helios_orderflow.engine.pair_engine import PairEngine
    from helios_orderflow.features.compute import candles_to_frame

    rows = []
    live = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, HeliosSettings(), on_candle=rows.append)
    for ev in _btcusdt.events():
        live.on_event(ev)
        if type(ev).__name__ == "Trade" and len(rows) % 3 == 0:
            live.snapshot()  # reading state must not change it either
    assert live.heatmap is not None and live.heatmap.seq > 1000
    frame = compute_features(_btcusdt.events(), "BTC/USDT", "1m", include_partial=False)
    pd.testing.assert_frame_equal(candles_to_frame(rows), frame)
