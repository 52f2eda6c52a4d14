"""Where HeliosStrategy's Freqtrade order-flow columns get their trades: the feed's bounded ``TradeTape`` (live) and
the recordings (backtests), both giving the columns Freqtrade's own ``populate_dataframe_with_trades`` gives on
the same trades; finished candles are computed once; ``helios.strategy.freqtrade_orderflow`` puts the columns in
the dataframe before ``populate_indicators``, as Freqtrade does, and a missing ``orderflow`` section stops start-up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from freqtrade.data.converter.orderflow import populate_dataframe_with_trades

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.events import Trade
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.emulator.synth import write_synthetic
from helios_orderflow.freqtrade.orderflow_columns import ORDERFLOW_COLUMNS, OrderflowParams
from helios_orderflow.freqtrade.orderflow_trades import OrderflowCells, recorded_trades, tape_frame
from helios_orderflow.freqtrade.strategy import HeliosBase
from helios_orderflow.freqtrade_orderflow import populate
from helios_orderflow.importers.binance_raw import iter_events
from helios_orderflow.live.trade_tape import TradeTape
from helios_orderflow.recording.reader import read_events
from tests.test_freqtrade_orderflow import assert_frames_identical, candles_frame

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside Freqtrade's code (pandas)

MIN_US = 60_000_000
ORDERFLOW = {"cache_size": 1500, "max_candles": 1500, "scale": 1.0, "imbalance_volume": 0.05, "imbalance_ratio": 3,
             "stacked_imbalance_range": 2}
ORIGIN_US = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000


def capture_trades() -> list[Trade]:
    return [e for e in iter_events(BINANCE_BTCUSDT_FILES, progress=False) if type(e) is Trade]


def candles_for(first_us: int, last_us: int) -> pd.DataFrame:
    first = first_us // MIN_US * MIN_US
    return candles_frame(first // 1000, (last_us // MIN_US * MIN_US - first) // MIN_US + 1)


def freqtrades(candles: pd.DataFrame, trades: pd.DataFrame, orderflow: dict[str, Any]) -> pd.DataFrame:
    out, _ = populate_dataframe_with_trades(None, {"timeframe": "1m", "orderflow": orderflow}, candles.copy(),
                                            trades.copy())
    return out


# --- the live tape ------------------------------------------------------------------------------------------


def test_tape_keeps_every_trade_once_in_arrival_order_and_drops_chunks_past_its_horizon() -> None:
    trades = capture_trades()
    tape = TradeTape(keep_us=3 * MIN_US, chunk_us=MIN_US)
    for t in trades:
        tape.append(t)
    got = tape.trades_since(0)
    # the capture spans 12 minutes: kept are the chunks whose newest trade is within 3 + 1 minutes of the last
    horizon = trades[-1].ts_us - 4 * MIN_US
    kept = [t for t in trades if t.ts_us // MIN_US >= horizon // MIN_US]
    assert len(got) == len(kept) == len(tape) and 0 < len(kept) < len(trades)
    assert got.trade_id.tolist() == [t.trade_id for t in kept]
    assert got.ts_us.tolist() == [t.ts_us for t in kept] and got.is_buy.tolist() == [t.side == "buy" for t in kept]
    assert got.newest_ts_us == max(t.ts_us for t in trades)
    # a later start gives whole chunks from the candle holding it
    since = tape.trades_since(trades[-1].ts_us // MIN_US * MIN_US)
    assert since.ts_us.min() // MIN_US == trades[-1].ts_us // MIN_US


def test_a_reader_racing_the_feed_thread_sees_a_prefix_of_the_trades_never_a_duplicate() -> None:
    trades = capture_trades()
    tape = TradeTape(keep_us=60 * MIN_US, chunk_us=MIN_US)
    done = threading.Event()
    read = threading.Event()
    reads: list[list[str]] = []
    # Ten times in the first half the writer waits for a read before it goes on, so that reads land while
    # it writes however the threads are scheduled (a busy machine ran the whole writer before the first read);
    # the rest races freely.
    step = max(1, len(trades) // 20)
    handshakes = set(range(step, len(trades) // 2, step)[:10])

    def writer() -> None:
        for i, t in enumerate(trades):
            if i in handshakes:
                read.clear()
                assert read.wait(30), "no read within 30 s"
            tape.append(t)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        reads.append(tape.trades_since(0).trade_id.tolist())
        read.set()
    thread.join()
    reads.append(tape.trades_since(0).trade_id.tolist())
    ids = [t.trade_id for t in trades]
    assert sum(0 < len(r) < len(ids) for r in reads) >= len(handshakes) >= 5  # reads made while it wrote
    for r in reads:
        assert r == ids[:len(r)]
    assert reads[-1] == ids


def test_live_cells_from_the_tape_equal_freqtrades_own_columns_and_finished_candles_are_computed_once() -> None:
    trades = capture_trades()
    candles = candles_for(trades[0].ts_us, trades[-1].ts_us)
    params = OrderflowParams.from_config({"timeframe": "1m", "orderflow": ORDERFLOW})
    cells = OrderflowCells(params)
    tape = TradeTape(keep_us=1500 * MIN_US, chunk_us=MIN_US)
    half = len(trades) // 2
    for t in trades[:half]:
        tape.append(t)
    # the bot's dataframe holds the candles closed so far: up to the one before the newest trade's
    closed = candles[candles.date < pd.Timestamp(trades[half - 1].ts_us // MIN_US * MIN_US, unit="us", tz="UTC")]
    first = cells.add_from_tape(closed, "BTC/USDT", tape)
    assert cells.computed_candles == len(closed) == 6
    for t in trades[half:]:
        tape.append(t)
    ours = cells.add_from_tape(candles, "BTC/USDT", tape)
    assert cells.computed_candles == 6 + 6  # only the new candles (the last one not yet finished)
    ours_again = cells.add_from_tape(candles, "BTC/USDT", tape)
    assert cells.computed_candles == 6 + 6 + 1  # the unfinished last candle is computed again, nothing else
    everything = tape_frame(tape.trades_since(0))
    theirs = freqtrades(candles, everything, ORDERFLOW)
    assert_frames_identical(ours, theirs)
    assert_frames_identical(ours_again, theirs)
    assert_frames_identical(first, freqtrades(closed, everything, ORDERFLOW))
    assert ours.total_trades.sum() == len(trades) == 19904
    assert everything.dtypes.astype(str).to_dict() == {
        "timestamp": "int64", "id": "str", "type": "str", "side": "str", "price": "float64", "amount": "float64",
        "cost": "float64", "date": "datetime64[us, UTC]"}


def test_no_tape_gives_every_column_all_nan() -> None:
    params = OrderflowParams.from_config({"timeframe": "1m", "orderflow": ORDERFLOW})
    out = OrderflowCells(params).add_from_tape(candles_frame(ORIGIN_US // 1000, 3), "BTC/USDT", None)
    assert out[list(ORDERFLOW_COLUMNS)].isna().all().all()


# --- recordings and the strategy ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ud = tmp_path_factory.mktemp("user_data")
    write_synthetic(str(ud / "orderflow" / "synth"), ["BTC/USDT"], 5, ORIGIN_US, 20 * MIN_US)
    return ud


def strategy_config(user_data: Path, *, flag: bool = True, orderflow: dict[str, Any] | None = None,
                    runmode: str = "backtest") -> dict[str, Any]:
    config: dict[str, Any] = {
        "runmode": runmode, "user_data_dir": str(user_data), "timeframe": "1m", "dry_run_wallet": 1000,
        "stake_currency": "USDT", "exchange": {"name": "binance", "pair_whitelist": ["BTC/USDT"]},
        "helios": {"backtest": {"recordings": "orderflow"}, "strategy": {"freqtrade_orderflow": flag}}}
    if orderflow is not None:
        config["orderflow"] = orderflow
    return config


def test_recorded_trades_come_in_freqtrades_format_in_recorded_order(user_data: Path) -> None:
    trades = recorded_trades([user_data / "orderflow" / "synth"], "binance", "BTC/USDT", ORIGIN_US,
                             ORIGIN_US + 5 * MIN_US)
    assert list(trades.columns) == ["timestamp", "id", "type", "side", "price", "amount", "cost", "date"]
    assert len(trades) > 1000
    assert trades.timestamp.between(ORIGIN_US // 1000, (ORIGIN_US + 5 * MIN_US) // 1000 - 1).all()
    assert set(trades.side) == {"buy", "sell"} and (trades.cost == trades.price * trades.amount).all()


def test_the_setting_puts_freqtrades_columns_in_the_dataframe_before_populate_indicators(user_data: Path) -> None:
    strategy = HeliosBase(strategy_config(user_data, orderflow=ORDERFLOW))
    candles = candles_for(ORIGIN_US, ORIGIN_US + 19 * MIN_US)
    seen: list[list[str]] = []
    original = strategy.populate_indicators

    def spy(dataframe: pd.DataFrame, metadata: dict) -> pd.DataFrame:
        seen.append(list(dataframe.columns))
        return original(dataframe, metadata)

    strategy.populate_indicators = spy  # type: ignore[method-assign]
    out = strategy.advise_indicators(candles.copy(), {"pair": "BTC/USDT"})
    assert set(ORDERFLOW_COLUMNS) <= set(seen[0])
    trades = recorded_trades([user_data / "orderflow" / "synth"], "binance", "BTC/USDT", 0, 2**62)
    theirs = freqtrades(candles, trades, ORDERFLOW)
    assert_frames_identical(out[list(theirs.columns)], theirs)
    assert out.total_trades.notna().all() and out.total_trades.sum() == len(trades)
    # every candle is final in a recording: a second call computes nothing
    computed = strategy.freqtrade_orderflow_cells().computed_candles
    strategy.advise_indicators(candles.copy(), {"pair": "BTC/USDT"})
    assert strategy.freqtrade_orderflow_cells().computed_candles == computed == 20
    # and the helper gives the same to a strategy that calls it itself, with the setting off
    helper = HeliosBase(strategy_config(user_data, flag=False, orderflow=ORDERFLOW))
    plain = helper.advise_indicators(candles.copy(), {"pair": "BTC/USDT"})
    assert not set(ORDERFLOW_COLUMNS) & set(plain.columns)
    assert_frames_identical(helper.add_freqtrade_orderflow(candles, "BTC/USDT"), populate(
        candles, trades, {"timeframe": "1m", "orderflow": ORDERFLOW}))


def test_the_setting_without_an_orderflow_section_stops_start_up_naming_it(user_data: Path) -> None:
    with pytest.raises(ConfigError, match="'orderflow' section"):
        HeliosBase(strategy_config(user_data))
    with pytest.raises(ConfigError, match=r"orderflow\.scale"):
        HeliosBase(strategy_config(user_data, orderflow={**ORDERFLOW, "scale": -1}))
    HeliosBase(strategy_config(user_data, flag=False))  # off: no section needed


def test_a_candle_outside_the_recordings_gets_nan(user_data: Path) -> None:
    strategy = HeliosBase(strategy_config(user_data, orderflow=ORDERFLOW))
    candles = candles_for(ORIGIN_US - 2 * MIN_US, ORIGIN_US + 2 * MIN_US)
    out = strategy.add_freqtrade_orderflow(candles, "BTC/USDT")
    assert out.total_trades.isna().tolist() == [True, True, False, False, False]
    assert np.isnan(out.delta.iloc[0]) and isinstance(out.orderflow.iloc[2], dict)


def test_live_candles_from_before_the_feed_started_come_from_the_recording(user_data: Path) -> None:
    rec = user_data / "orderflow" / "synth"
    recorded = [e for e in read_events(rec, symbol="BTC/USDT") if type(e) is Trade]
    started_us = ORIGIN_US + 10 * MIN_US  # the feed of this run started at minute 10
    tape = TradeTape(keep_us=1500 * MIN_US, chunk_us=MIN_US)
    for t in recorded:
        if t.ts_us >= started_us:
            tape.append(t)
    candles = candles_for(ORIGIN_US, ORIGIN_US + 18 * MIN_US)  # closed candles: minutes 0 .. 18
    cells = OrderflowCells(OrderflowParams.from_config({"timeframe": "1m", "orderflow": ORDERFLOW}))
    ours = cells.add_from_tape(candles, "BTC/USDT", tape, lambda: [rec], "binance")
    everything = recorded_trades([rec], "binance", "BTC/USDT", 0, 2**62)
    assert_frames_identical(ours, freqtrades(candles, everything, ORDERFLOW))
    assert ours.total_trades.notna().all()
    # without a recording those candles are NaN, the tape's are filled
    alone = OrderflowCells(cells.params).add_from_tape(candles, "BTC/USDT", tape)
    assert alone.total_trades.isna().tolist() == [True] * 10 + [False] * 9
