"""``helios export-trades``: recorded trades in Freqtrade's trades format, read back by Freqtrade itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from freqtrade.data.history import get_datahandler
from freqtrade.enums import TradingMode

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.features.export_trades import TRADES_COLUMNS, export_trades, pair_filename
from helios_orderflow.importers.binance_raw import iter_events
from helios_orderflow.recording import RecordingWriter

TAKER_BUY = 204.49112  # ../shared/README.md, checked figures of the BTCUSDT capture
TAKER_SELL = 233.4244
TRADES = 19904


@pytest.fixture(scope="module")
def btcusdt_recording(tmp_path_factory: pytest.TempPathFactory, btcusdt_files: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("rec") / "btcusdt"
    with RecordingWriter(root, RecordingSettings(), flush_by_time=False) as w:
        for ev in iter_events(btcusdt_files, progress=None):
            w.write(ev)
    return root


def test_pair_file_names_follow_freqtrade() -> None:
    assert pair_filename("BTC/USDT") == "BTC_USDT"
    assert pair_filename("BTC/USDT:USDT") == "BTC_USDT_USDT"


@pytest.mark.parametrize("fmt", ["feather", "json", "parquet"])
def test_freqtrade_reads_every_recorded_trade_back(btcusdt_recording: Path, tmp_path: Path, fmt: str) -> None:
    (done,) = export_trades(btcusdt_recording, tmp_path, fmt=fmt)
    assert done.pair == "BTC/USDT" and done.trades == TRADES
    suffix = {"feather": "feather", "json": "json", "parquet": "parquet"}[fmt]
    assert done.path == tmp_path / f"BTC_USDT-trades.{suffix}"
    trades = get_datahandler(tmp_path, fmt).trades_load("BTC/USDT", TradingMode.SPOT)
    assert list(trades.columns[:7]) == list(TRADES_COLUMNS)
    assert len(trades) == TRADES
    assert trades["timestamp"].is_monotonic_increasing
    assert trades.loc[trades["side"] == "buy", "amount"].sum() == pytest.approx(TAKER_BUY, abs=1e-6)
    assert trades.loc[trades["side"] == "sell", "amount"].sum() == pytest.approx(TAKER_SELL, abs=1e-6)
    assert (trades["cost"] - trades["price"] * trades["amount"]).abs().max() < 1e-9
    # Exchange time, floored to the millisecond: the capture runs 2024-08-08 23:54 to 2024-08-09 00:05 UTC.
    first = pd.Timestamp(int(trades["timestamp"].iloc[0]), unit="ms", tz="UTC")
    assert first.strftime("%Y-%m-%d %H:%M") == "2024-08-08 23:54"
    assert trades["id"].astype(int).diff().iloc[1:].eq(1).all()  # the capture's trade ids have no gaps


def test_futures_pairs_go_to_the_futures_folder(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    with RecordingWriter(rec, RecordingSettings(), flush_by_time=False) as w:
        for i in range(5):
            w.write(Trade("binanceusdm", "BTC/USDT:USDT", 1_700_000_000_000_000 + i * 1500, 1_700_000_000_000_000 + i,
                          60000.0 + i, 0.001 * (i + 1), "buy" if i % 2 else "sell", str(100 + i)))
    (done,) = export_trades(rec, tmp_path / "data")
    assert done.path == tmp_path / "data" / "futures" / "BTC_USDT_USDT-trades.feather"
    back = get_datahandler(tmp_path / "data", "feather").trades_load("BTC/USDT:USDT", TradingMode.FUTURES)
    assert list(back["timestamp"]) == [1_700_000_000_000 + (i * 1500) // 1000 for i in range(5)]
    assert list(back["id"]) == ["100", "101", "102", "103", "104"]


def test_a_stream_the_recording_lacks_is_a_clear_error(btcusdt_recording: Path, tmp_path: Path) -> None:
    lacks = r"has no stream for exchange=any symbols=ETH/USDT \(it has: binance BTC/USDT\)"
    with pytest.raises(HeliosError, match=lacks):
        export_trades(btcusdt_recording, tmp_path, symbols=["ETH/USDT"])
    with pytest.raises(HeliosError, match="is not one of feather, parquet, json, jsongz"):
        export_trades(btcusdt_recording, tmp_path, fmt="csv")


def test_cli_writes_the_file_and_says_where(btcusdt_recording: Path, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "helios_orderflow.cli", "export-trades", str(btcusdt_recording),
                          "--datadir", str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"binance BTC/USDT: {TRADES} trades -> {tmp_path / 'BTC_USDT-trades.feather'}"
