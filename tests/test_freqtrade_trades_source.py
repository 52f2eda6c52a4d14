"""Freqtrade's own downloaded trades (``download-data --dl-trades``) as a recording source: files written by
Freqtrade's own writer (its data handler's ``trades_store``, after the conversions ``download-data`` applies) give
the same trade-based features as the recording they came from; book columns are NaN, ``had_book`` 0, and no
book signal fires."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from _book_trades_stream import book_and_trades
from _btcusdt import SYMBOL
from _btcusdt import trades as real_trades
from freqtrade.data.converter import trades_df_remove_duplicates, trades_dict_to_list, trades_list_to_df
from freqtrade.data.history.datahandlers import get_datahandler
from freqtrade.enums import TradingMode

from helios_orderflow.cli.main import main as helios
from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.features.compute import compute_features
from helios_orderflow.importers import ImportStats, iter_import
from helios_orderflow.recording.reader import read_events
from helios_orderflow.recording.writer import RecordingWriter

EXCHANGE = "binance"
PAIR = "BTC/USDT"
START_US = 1_704_063_600_000_000 + 123  # 2023-12-31 23:00 UTC (+123 µs): the data cross a session start
#: Columns computed from trades alone: equal whatever the source.
TRADE_COLUMNS = ("open", "high", "low", "close", "volume", "trades", "buy_volume", "sell_volume", "delta", "cvd",
                 "cvd_total", "vwap", "vwap_upper_1", "vwap_lower_1", "vwap_upper_2", "vwap_lower_2",
                 "exhaustion_up", "exhaustion_down", "session_poc", "session_vah", "session_val",
                 "prev_session_poc", "prev_session_vah", "prev_session_val")
#: Columns that need the book: NaN (prices, sizes, imbalances) or 0 (OFI sums, flags) without one.
BOOK_NAN_COLUMNS = ("depth_imbalance", "queue_imbalance", "weighted_mid", "mid", "spread", "bid_wall_price",
                    "bid_wall_size", "ask_wall_price", "ask_wall_size")
BOOK_ZERO_COLUMNS = ("ofi", "ofi_multi", "absorption_bull", "absorption_bear", "book_ok", "had_book")


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec") / "synthetic"
    with RecordingWriter(root, RecordingSettings(segment_s=86_400.0), flush_by_time=False) as w:  # few files
        for ev in book_and_trades(EXCHANGE, PAIR, START_US, minutes=120):
            w.write(ev)
    return root


@pytest.fixture(scope="module")
def recording_features(recording: Path) -> pd.DataFrame:
    return compute_features(recording, PAIR, "1m", cache=False)


def freqtrade_store(trades: list[Trade], datadir: Path, fmt: str, pair: str = PAIR) -> Path:
    """``trades`` written the way ``freqtrade download-data --dl-trades`` writes them: ccxt trade dicts ->
    Freqtrade's ``trades_dict_to_list`` -> ``trades_list_to_df`` -> ``trades_df_remove_duplicates`` -> its data
    handler's ``trades_store``. Returns the file."""
    ccxt_trades = [{"timestamp": t.ts_us // 1000, "id": t.trade_id, "type": None, "side": t.side, "price": t.price,
                    "amount": t.amount, "cost": t.price * t.amount} for t in trades]
    frame = trades_df_remove_duplicates(trades_list_to_df(trades_dict_to_list(ccxt_trades)))
    datadir.mkdir(parents=True, exist_ok=True)  # download-data makes user_data/data/<exchange> first
    handler = get_datahandler(datadir, fmt)
    handler.trades_store(pair, frame, TradingMode.SPOT)
    path = handler._pair_trades_filename(datadir, pair, TradingMode.SPOT)
    assert path.is_file()
    return path


@pytest.mark.parametrize("fmt", ["feather", "json", "jsongz", "parquet"])
def test_freqtrade_written_trades_give_the_recordings_trade_features_with_nan_book_columns(
        recording: Path, recording_features: pd.DataFrame, tmp_path: Path, fmt: str) -> None:
    trades = [e for e in read_events(recording, exchange=EXCHANGE, symbol=PAIR) if type(e) is Trade]
    assert len(trades) > 10_000
    datadir = tmp_path / "data" / EXCHANGE
    freqtrade_store(trades, datadir, fmt)
    out = tmp_path / "imported"
    assert helios(["import", "--format", "freqtrade-trades", str(datadir), "--out", str(out), "--no-progress"]) == 0

    ours = recording_features
    theirs = compute_features(out, PAIR, "1m", cache=False)
    # 2 hours of 1m candles (+ the open one); the trades-only stream ends at its last trade, the recording at its
    # last book message: the recording may have one more (empty) candle after the last trade.
    assert len(ours) == 121 and len(theirs) in (120, 121)
    ours = ours.iloc[:len(theirs)]
    pd.testing.assert_frame_equal(ours[["date", *TRADE_COLUMNS]], theirs[["date", *TRADE_COLUMNS]])
    # the session start inside the data: the previous session's levels appear after midnight
    midnight = pd.Timestamp("2024-01-01", tz="UTC")
    assert theirs.loc[theirs["date"] >= midnight, "prev_session_poc"].notna().all()
    assert theirs.loc[theirs["date"] < midnight, "prev_session_poc"].isna().all()
    # the recording had a book, the Freqtrade trades have none
    assert ours["had_book"].all() and ours["book_ok"].all() and ours["mid"].notna().all()
    assert theirs[list(BOOK_NAN_COLUMNS)].isna().all().all()
    assert (theirs[list(BOOK_ZERO_COLUMNS)] == 0).all().all()


def test_real_capture_trades_via_freqtrade_equal_the_captures_trades_and_keep_every_trade(tmp_path: Path) -> None:
    """The real Binance capture: its trades written by Freqtrade's feather writer give exactly the features
    of the capture's own trades. Against the whole capture (book included) totals are equal; per candle a
    sliver of volume differs, the trades the capture received after a later depth message had closed their
    candle (the engine counts them in the candle open on arrival: engine/candles.py)."""
    trades = real_trades()
    datadir = tmp_path / "data" / "binance"
    path = freqtrade_store(trades, datadir, "feather", SYMBOL)
    stats = ImportStats()
    events = list(iter_import("freqtrade-trades", [path], stats=stats))
    assert stats.events == len(events) == len(trades) and not stats.skipped
    assert {(e.exchange, e.symbol) for e in events} == {("binance", SYMBOL)}
    theirs = compute_features(events, SYMBOL, "5m")
    ours = compute_features(trades, SYMBOL, "5m")
    pd.testing.assert_frame_equal(ours[["date", *TRADE_COLUMNS]], theirs[["date", *TRADE_COLUMNS]])
    assert theirs["volume"].sum() == pytest.approx(sum(t.amount for t in trades), rel=1e-12)
    assert theirs["had_book"].sum() == 0


def test_a_futures_file_names_its_pair_and_the_folder_its_exchange(tmp_path: Path) -> None:
    datadir = tmp_path / "data" / "binanceusdm"
    datadir.mkdir(parents=True)
    trades = [Trade("x", "y", 1_700_000_000_000_000 + i * 1000, 0, 100.0 + i, 1.0, "buy", str(i)) for i in range(3)]
    ccxt_trades = [{"timestamp": t.ts_us // 1000, "id": t.trade_id, "type": None, "side": t.side, "price": t.price,
                    "amount": t.amount, "cost": t.price} for t in trades]
    get_datahandler(datadir, "feather").trades_store(
        "BTC/USDT:USDT", trades_list_to_df(trades_dict_to_list(ccxt_trades)), TradingMode.FUTURES)
    events = list(iter_import("freqtrade-trades", [datadir]))
    assert [(e.exchange, e.symbol, e.ts_us, e.price) for e in events] == [
        ("binanceusdm", "BTC/USDT:USDT", t.ts_us, t.price) for t in trades]


def test_a_trade_without_a_side_is_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "kraken" / "ETH_USD-trades.json"
    path.parent.mkdir()
    path.write_text('[[1700000000000, "1", null, "buy", 2000.0, 1.5, 3000.0],'
                    ' [1700000000001, "2", null, null, 2001.0, 1.0, 2001.0]]')
    stats = ImportStats()
    events = list(iter_import("freqtrade-trades", [path], stats=stats))
    assert [(e.symbol, e.exchange, e.amount) for e in events] == [("ETH/USD", "kraken", 1.5)]
    assert stats.skipped == {"trade without a taker side (buy/sell)": 1}
    assert math.isclose(events[0].price, 2000.0)
