"""Freqtrade's order-flow columns from Helios's trades (``helios_orderflow.freqtrade_orderflow.populate``): cell for
cell and dtype for dtype equal to Freqtrade's own ``populate_dataframe_with_trades`` (called as an oracle; it runs
standalone on a tz-aware candle frame and a trades frame in Freqtrade's format) on the bundled Binance BTC/USDT
capture, on trades synthesized with hypothesis, stacked imbalances worked by hand, and the edges (no trades, empty
candles, trades outside the candles)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from freqtrade.data.converter.orderflow import populate_dataframe_with_trades
from hypothesis import given, settings
from hypothesis import strategies as st

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.events import Trade
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.freqtrade.orderflow_columns import ORDERFLOW_COLUMNS
from helios_orderflow.freqtrade_orderflow import populate
from helios_orderflow.importers.binance_raw import iter_events

T0_MS = 1723161600_000  # 2024-08-09T00:00Z
MIN_MS = 60_000

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside Freqtrade's code (pandas)


def config(scale: float = 1.0, ratio: float = 3, volume: float = 0.0, stacked: int = 3,
           max_candles: int = 1500) -> dict[str, Any]:
    return {"timeframe": "1m", "orderflow": {"cache_size": 1500, "max_candles": max_candles, "scale": scale,
                                             "stacked_imbalance_range": stacked, "imbalance_volume": volume,
                                             "imbalance_ratio": ratio}}


def trades_frame(rows: list[tuple[int, float, float, str]]) -> pd.DataFrame:
    """Freqtrade's trades format from ``(timestamp ms, price, amount, side)``."""
    df = pd.DataFrame(rows, columns=["timestamp", "price", "amount", "side"])
    df.insert(1, "id", [str(i) for i in range(len(df))])
    df.insert(2, "type", None)
    df = df[["timestamp", "id", "type", "side", "price", "amount"]].copy()
    df["cost"] = df.price * df.amount
    df["date"] = pd.to_datetime(df.timestamp, unit="ms", utc=True)
    return df


def candles_frame(first_ms: int, count: int) -> pd.DataFrame:
    opens = pd.date_range(pd.Timestamp(first_ms, unit="ms", tz="UTC"), periods=count, freq="1min")
    return pd.DataFrame({"date": opens, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})


def freqtrades(candles: pd.DataFrame, trades: pd.DataFrame, cfg: dict[str, Any]) -> pd.DataFrame:
    """Freqtrade's own result (on copies: it changes both frames in place)."""
    out, _ = populate_dataframe_with_trades(None, cfg, candles.copy(), trades.copy())
    return out


def same_cell(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)


def assert_frames_identical(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    assert list(ours.columns) == list(theirs.columns)
    assert ours.dtypes.to_dict() == theirs.dtypes.to_dict()
    for column in theirs.columns:
        mismatched = [i for i, (a, b) in enumerate(zip(ours[column], theirs[column], strict=True))
                      if not same_cell(a, b)]
        assert mismatched == [], f"column {column}: rows {mismatched[:5]} differ"
    # the element types inside the cells too: ints for counts, bools for flags, np.float64 for stacked prices
    for column in ("orderflow", "imbalances"):
        for a, b in zip(ours[column], theirs[column], strict=True):
            if isinstance(b, dict):
                assert [type(k) for k in a] == [type(k) for k in b]
                assert [{k: type(v) for k, v in cell.items()} for cell in a.values()] == [
                    {k: type(v) for k, v in cell.items()} for cell in b.values()]
    for a, b in zip(ours.trades, theirs.trades, strict=True):
        if isinstance(b, list):
            assert [{k: type(v) for k, v in t.items()} for t in a] == [{k: type(v) for k, v in t.items()} for t in b]
    for column in ("stacked_imbalances_bid", "stacked_imbalances_ask"):
        for a, b in zip(ours[column], theirs[column], strict=True):
            if isinstance(b, list):
                assert [type(x) for x in a] == [type(x) for x in b]


# --- the real capture --------------------------------------------------------------------------------------


@functools.cache
def real_trades() -> pd.DataFrame:
    """The capture's trades in Freqtrade's trades format (timestamp ms, date UTC)."""
    trades = [e for e in iter_events(BINANCE_BTCUSDT_FILES, progress=False) if type(e) is Trade]
    df = pd.DataFrame({
        "timestamp": np.array([t.ts_us // 1000 for t in trades], dtype=np.int64),
        "id": [t.trade_id for t in trades],
        "type": None,
        "side": [t.side for t in trades],
        "price": np.array([t.price for t in trades]),
        "amount": np.array([t.amount for t in trades]),
    })
    df["cost"] = df.price * df.amount
    df["date"] = pd.to_datetime(df.timestamp, unit="ms", utc=True)
    return df


def real_candles() -> pd.DataFrame:
    df = real_trades()
    first = int(df.timestamp.min()) // MIN_MS * MIN_MS
    last = int(df.timestamp.max()) // MIN_MS * MIN_MS
    return candles_frame(first, (last - first) // MIN_MS + 1)


@pytest.mark.parametrize(("scale", "ratio", "volume", "stacked", "max_candles", "filled", "stacks"), [
    (0.5, 3, 1.0, 3, 1500, 12, 0),
    (0.5, 3, 0.05, 3, 1500, 12, 12),
    (1.0, 3, 0.05, 2, 1500, 12, 55),
    (5.0, 2, 0.5, 3, 5, 5, 1),
    (0.5, 2.5, 0.1, 2, 7, 7, 15),
])
def test_real_capture_columns_equal_freqtrades_own_cell_for_cell(
        scale: float, ratio: float, volume: float, stacked: int, max_candles: int, filled: int, stacks: int) -> None:
    candles, trades = real_candles(), real_trades()
    cfg = config(scale, ratio, volume, stacked, max_candles)
    theirs = freqtrades(candles, trades, cfg)
    ours = populate(candles, trades, cfg)
    assert len(ours) == 12  # 23:54 .. 00:05
    assert_frames_identical(ours, theirs)
    # max_candles: only the last ones get values (Freqtrade drops older trades); the rest stay NaN
    assert ours.total_trades.notna().tolist() == [False] * (12 - filled) + [True] * filled
    assert ours.total_trades.sum() == sum(len(t) for t in ours.trades.dropna())
    # the comparison saw stacked imbalances, not only empty lists
    assert sum(len(x) for x in ours.stacked_imbalances_bid.dropna()) + sum(
        len(x) for x in ours.stacked_imbalances_ask.dropna()) == stacks


def test_real_capture_totals_are_the_captures_volume_and_trade_count() -> None:
    ours = populate(real_candles(), real_trades(), config(scale=0.5))
    assert ours.total_trades.sum() == len(real_trades()) == 19904
    assert (ours.bid + ours.ask).sum() == pytest.approx(211.86101 + 226.05451, abs=1e-5)
    assert (ours.delta == ours.ask - ours.bid).all()
    assert (ours.min_delta <= ours.delta).all() and (ours.delta <= ours.max_delta).all()


def test_input_frames_are_not_changed() -> None:
    candles, trades = real_candles(), real_trades()
    candles_before, trades_before = candles.copy(), trades.copy()
    populate(candles, trades, config(scale=0.5))
    pd.testing.assert_frame_equal(candles, candles_before)
    pd.testing.assert_frame_equal(trades, trades_before)


# --- stacked imbalances by hand -----------------------------------------------------------------------------

# Candle 1 (00:00), scale 1, trade counts: 100: 4 sells; 101, 102, 104: 4 sells + 1 buy each (103 empty); 105: 1 buy.
# bid imbalance at p = bid[p] / ask[next traded bin] > 3: 100: 4/1, 101: 4/1, 102: 4/1, 104: 4/1 -> True; 105: no
# next. One run of 4 consecutive TRADED bins (the empty 103 does not break it): 100, 101, 102, 104.
# Candle 2 (00:01): 200: 1 sell; 201: 4 buys; 202: 4 buys. ask imbalance at p = ask[next] / bid[p] > 3:
# 200: 4/1 -> True; 201: 4/0 = inf -> True; 202: no next. A run of 2: 200, 201.
HAND_STACKED = [
    *[(T0_MS + 1, 100.0, 1.0, "sell")] * 4,
    *[(T0_MS + 2, p, 1.0, "sell") for p in (101.0, 102.0, 104.0) for _ in range(4)],
    *[(T0_MS + 3, p, 1.0, "buy") for p in (101.0, 102.0, 104.0, 105.0)],
    (T0_MS + MIN_MS, 200.0, 1.0, "sell"),
    *[(T0_MS + MIN_MS + 1, p, 1.0, "buy") for p in (201.0, 202.0) for _ in range(4)],
]


@pytest.mark.parametrize(("stacked", "bid_starts", "ask_starts"), [
    (1, [100.0, 101.0, 102.0, 104.0], [200.0, 201.0]),
    (2, [100.0, 101.0, 102.0], [200.0]),  # every window of 2 inside the run, by its lowest price
    (3, [100.0, 101.0], []),
    (4, [100.0], []),
    (5, [], []),
])
def test_stacked_imbalances_worked_by_hand(stacked: int, bid_starts: list[float], ask_starts: list[float]) -> None:
    candles, trades = candles_frame(T0_MS, 2), trades_frame(HAND_STACKED)
    cfg = config(stacked=stacked)
    ours = populate(candles, trades, cfg)
    assert ours.imbalances[0] == {p: {"bid_imbalance": p != 105.0, "ask_imbalance": False}
                                  for p in (100.0, 101.0, 102.0, 104.0, 105.0)}
    assert [ours.stacked_imbalances_bid[0], ours.stacked_imbalances_ask[0]] == [bid_starts, []]
    assert [ours.stacked_imbalances_bid[1], ours.stacked_imbalances_ask[1]] == [[], ask_starts]
    assert ours.orderflow[1][201.0] == {"bid": 0, "ask": 4, "delta": 4.0, "bid_amount": 0.0, "ask_amount": 4.0,
                                        "total_volume": 4.0, "total_trades": 4}
    # candle 1: 16 sells then 4 buys -> running delta down to -16, ends at -12
    assert (ours.bid[0], ours.ask[0], ours.delta[0], ours.min_delta[0], ours.max_delta[0], ours.total_trades[0]) == (
        16.0, 4.0, -12.0, -16.0, -1.0, 20.0)
    assert_frames_identical(ours, freqtrades(candles, trades, cfg))


# --- edges --------------------------------------------------------------------------------------------------


def test_no_trades_gives_every_column_all_nan_with_freqtrades_dtypes() -> None:
    candles = candles_frame(T0_MS, 3)
    empty = trades_frame([])
    for trades in (empty, None):
        ours = populate(candles, trades, config())
        assert list(ours.columns) == [*candles.columns, *ORDERFLOW_COLUMNS]
        assert ours[list(ORDERFLOW_COLUMNS)].isna().all().all()
        assert_frames_identical(ours, freqtrades(candles, empty, config()))
    assert ours.orderflow.dtype == object and ours.total_trades.dtype == np.float64


def test_candles_without_trades_stay_nan() -> None:
    candles = candles_frame(T0_MS, 4)
    trades = trades_frame([(T0_MS + 5, 100.0, 1.0, "buy"), (T0_MS + 2 * MIN_MS + 7, 101.0, 2.0, "sell")])
    ours = populate(candles, trades, config())
    assert ours.total_trades.tolist()[0] == 1.0 and ours.total_trades.tolist()[2] == 1.0
    assert ours.total_trades.isna().tolist() == [False, True, False, True]
    assert ours.orderflow.isna().tolist() == [False, True, False, True]
    assert ours.bid.tolist()[2] == 2.0 and ours.stacked_imbalances_bid[0] == []
    assert_frames_identical(ours, freqtrades(candles, trades, config()))


def test_trades_outside_the_candles_and_before_max_candles_are_ignored() -> None:
    candles = candles_frame(T0_MS, 3)
    trades = trades_frame([
        (T0_MS - 1, 99.0, 5.0, "buy"),  # the candle before the first row
        (T0_MS + 10, 100.0, 1.0, "buy"),  # row 0: older than the last max_candles=2 rows
        (T0_MS + MIN_MS, 100.0, 2.0, "sell"),  # row 1, on its open
        (T0_MS + 3 * MIN_MS - 1, 101.0, 3.0, "buy"),  # row 2, last millisecond
        (T0_MS + 3 * MIN_MS, 102.0, 7.0, "sell"),  # after the last row
    ])
    cfg = config(max_candles=2)
    ours = populate(candles, trades, cfg)
    assert ours.total_trades.isna().tolist() == [True, False, False]
    assert (ours.bid[1], ours.ask[1], ours.ask[2]) == (2.0, 0.0, 3.0)
    assert [t["id"] for t in ours.trades[2]] == ["3"]
    assert_frames_identical(ours, freqtrades(candles, trades, cfg))
    # with max_candles covering all rows, row 0 gets its trade (and still not the one before it)
    assert populate(candles, trades, config()).total_trades.tolist() == [1.0, 1.0, 1.0]


def test_trades_in_any_order_give_each_candles_trades_in_the_order_given() -> None:
    rows = [(T0_MS + MIN_MS + 1, 100.0, 1.0, "buy"), (T0_MS + 1, 100.0, 2.0, "sell"),
            (T0_MS + 2, 100.0, 3.0, "buy"), (T0_MS + MIN_MS, 101.0, 4.0, "sell")]
    candles, trades = candles_frame(T0_MS, 2), trades_frame(rows)
    ours = populate(candles, trades, config())
    assert [t["id"] for t in ours.trades[0]] == ["1", "2"] and [t["id"] for t in ours.trades[1]] == ["0", "3"]
    assert (ours.min_delta[1], ours.max_delta[1]) == (-3.0, 1.0)  # +1 then -4, in the order given
    assert_frames_identical(ours, freqtrades(candles, trades, config()))


def test_naive_candle_dates_are_taken_as_utc() -> None:
    candles = candles_frame(T0_MS, 1)
    naive = candles.assign(date=candles.date.dt.tz_localize(None))
    trades = trades_frame([(T0_MS + 5, 100.0, 1.0, "buy")])
    assert populate(naive, trades, config()).total_trades.tolist() == [1.0]


def test_bad_config_and_bad_trades_name_the_problem() -> None:
    candles, trades = candles_frame(T0_MS, 1), trades_frame([(T0_MS, 100.0, 1.0, "buy")])
    with pytest.raises(ConfigError, match="'orderflow' section"):
        populate(candles, trades, {"timeframe": "1m"})
    with pytest.raises(ConfigError, match=r"orderflow\.scale"):
        populate(candles, trades, config(scale=0.0))
    with pytest.raises(ConfigError, match=r"orderflow\.stacked_imbalance_range"):
        populate(candles, trades, config(stacked=0))
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell'"):
        populate(candles, trades.assign(side="unknown"), config())
    with pytest.raises(ValueError, match="missing column"):
        populate(candles, trades.drop(columns=["timestamp"]), config())
    with pytest.raises(ValueError, match="weeks"):
        populate(candles, trades, {**config(), "timeframe": "1w"})


def test_kept_import_path_gives_the_sub_package_function() -> None:
    from helios_orderflow.freqtrade.orderflow_columns import populate as inner

    candles, trades = real_candles(), real_trades()
    assert_frames_identical(populate(candles, trades, config(0.5)), inner(candles, trades, config(0.5)))


# --- synthesized trades -------------------------------------------------------------------------------------


@st.composite
def synthesized(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """A few candles and trades in any order: times inside, before and after the candles, prices on a coarse grid
    (so bins fill and stack), counts and sizes that cross the imbalance thresholds both ways."""
    n_candles = draw(st.integers(1, 4))
    trades = draw(st.lists(st.tuples(
        st.integers(-MIN_MS, (n_candles + 1) * MIN_MS - 1),
        st.integers(0, 24).map(lambda k: 100.0 + 0.25 * k),
        st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 2.5]),
        st.sampled_from(["buy", "sell"])), max_size=80))
    cfg = config(scale=draw(st.sampled_from([0.25, 0.5, 1.0, 2.0])), ratio=draw(st.sampled_from([0.5, 1.5, 3.0])),
                 volume=draw(st.sampled_from([0.0, 0.05, 1.0])), stacked=draw(st.integers(1, 4)),
                 max_candles=draw(st.integers(1, 5)))
    rows = [(T0_MS + dt, price, amount, side) for dt, price, amount, side in trades]
    return candles_frame(T0_MS, n_candles), trades_frame(rows), cfg


@given(synthesized())
@settings(max_examples=60)
def test_synthesized_trades_give_freqtrades_own_columns_cell_for_cell(
        case: tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]) -> None:
    candles, trades, cfg = case
    assert_frames_identical(populate(candles, trades, cfg), freqtrades(candles, trades, cfg))
