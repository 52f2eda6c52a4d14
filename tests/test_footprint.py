"""Footprint: bid/ask per candle and price bin against an independent pandas groupby on the bundled Binance
BTC/USDT capture, and the diagonal imbalances against Freqtrade's rule worked by hand and against Freqtrade's
own functions, called as an oracle (``populate_dataframe_with_trades`` runs standalone on a candle frame and a
trades frame in Freqtrade's format; no exchange, no config file)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from freqtrade.data.converter.orderflow import (
    populate_dataframe_with_trades,
    trades_orderflow_to_imbalances,
    trades_to_volumeprofile_with_total_delta_bid_ask,
)

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.importers.binance_raw import iter_events
from helios_orderflow.signals.footprint import FOOTPRINT_COLUMNS, candle_open_us, diagonal_imbalances, footprint

T0_US = 1723161600_000_000  # 2024-08-09T00:00Z

# One 1m candle, bin 1.0 (price, amount, taker side). Traded bins 100, 101, 103, 104, 106 (102 and 105 empty).
HAND = [
    *[(100.0, 0.5, "sell")] * 4,  # 100: bid 4 trades / 2.0, ask 0
    (101.0, 1.0, "sell"), (101.2, 1.0, "buy"),  # 101: bid 1 / 1.0, ask 1 / 1.0
    *[(103.0, 0.25, "buy")] * 4,  # 103: bid 0, ask 4 / 1.0
    *[(104.0, 0.1, "sell")] * 4,  # 104: bid 4 / 0.4 (below the 1.0 minimum), ask 0
    (106.0, 5.0, "buy"),  # 106: ask 1 / 5.0 (highest: no next bin)
]


def hand_footprint(**kwargs: Any) -> pd.DataFrame:
    n = len(HAND)
    return footprint(np.arange(n) * 1_000_000 + T0_US, [p for p, _, _ in HAND], [q for _, q, _ in HAND],
                     [s == "buy" for _, _, s in HAND], bin_size=1.0, **kwargs)


def test_hand_worked_cells() -> None:
    fp = hand_footprint().loc[T0_US]
    assert fp.index.tolist() == [100.0, 101.0, 103.0, 104.0, 106.0]
    assert fp.bid_volume.tolist() == [2.0, 1.0, 0.0, pytest.approx(0.4), 0.0]
    assert fp.ask_volume.tolist() == [0.0, 1.0, 1.0, 0.0, 5.0]
    assert fp.delta.tolist() == [-2.0, 0.0, 1.0, pytest.approx(-0.4), 5.0]
    assert fp.total_volume.tolist() == [2.0, 2.0, 1.0, pytest.approx(0.4), 5.0]
    assert fp.trades.tolist() == [4, 2, 4, 4, 1]
    assert (fp.bid_trades.tolist(), fp.ask_trades.tolist()) == ([4, 1, 0, 4, 0], [0, 1, 4, 0, 1])


def test_hand_worked_imbalances_follow_freqtrades_rule_on_trade_counts() -> None:
    # Each bin against the next TRADED bin above (100->101, 101->103, 103->104, 104->106), trade counts:
    # bid 100: 4 / ask 101: 1 = 4 > 3                  -> bid imbalance at 100
    # ask 103: 4 / bid 101: 1 = 4 > 3                  -> ask imbalance, flagged at 101 (the lower bin)
    # 103: bid 0 / ask 104: 0 and 0 / 0                -> none
    # bid 104: 4 / ask 106: 1 = 4 > 3, but 104 holds 0.4 < 1.0 (the volume minimum) -> none
    # 106: no next bin                                 -> none
    fp = hand_footprint().loc[T0_US]
    assert fp.bid_imbalance.tolist() == [True, False, False, False, False]
    assert fp.ask_imbalance.tolist() == [False, True, False, False, False]
    # the minimum is ">= imbalance_volume": at 0.4, 104 qualifies
    assert hand_footprint(imbalance_volume=0.4).loc[T0_US].bid_imbalance.tolist() == [True, False, False, True, False]
    # the ratio is strict: 4 is not > 4
    strict = hand_footprint(imbalance_ratio=4).loc[T0_US]
    assert not strict.bid_imbalance.any() and not strict.ask_imbalance.any()


def test_hand_worked_imbalances_equal_freqtrades_functions() -> None:
    trades = pd.DataFrame(HAND, columns=["price", "amount", "side"])
    orderflow = trades_to_volumeprofile_with_total_delta_bid_ask(trades, scale=1.0)
    for volume in (1.0, 0.4):
        ft = trades_orderflow_to_imbalances(orderflow, imbalance_ratio=3, imbalance_volume=volume)
        ours = hand_footprint(imbalance_volume=volume).loc[T0_US]
        assert ours.index.tolist() == ft.index.tolist()
        assert ours.bid_imbalance.tolist() == ft.bid_imbalance.tolist()
        assert ours.ask_imbalance.tolist() == ft.ask_imbalance.tolist()
    assert orderflow.bid.tolist() == [4, 1, 0, 4, 0]  # Freqtrade's "bid" in the rule: a count of trades


def test_volume_basis_compares_base_volumes() -> None:
    # bid 100: 2.0 / ask 101: 1.0 = 2; ask 103: 1.0 / bid 101: 1.0 = 1; ask 106: 5.0 / bid 104: 0.4 = 12.5 (104 < 1.0)
    fp = hand_footprint(imbalance_basis="volume").loc[T0_US]
    assert not fp.bid_imbalance.any() and not fp.ask_imbalance.any()
    low = hand_footprint(imbalance_basis="volume", imbalance_volume=0.0).loc[T0_US]
    assert low.ask_imbalance.tolist() == [False, False, False, True, False]
    with pytest.raises(ValueError, match="imbalance_basis"):
        hand_footprint(imbalance_basis="notional")


def test_division_by_zero_counts_as_infinite() -> None:
    bid, ask = diagonal_imbalances([2, 0, 0], [0, 0, 3], [5.0, 5.0, 5.0])
    # 2 / 0 (next ask) = inf > 3: bid imbalance; 0 / 3: none; ask 3 / bid 0 = inf: ask imbalance at bin 1
    assert bid.tolist() == [True, False, False]
    assert ask.tolist() == [False, True, False]


def test_no_trades_and_one_trade() -> None:
    empty = footprint([], [], [], [], bin_size=1.0)
    assert empty.empty and list(empty.columns) == list(FOOTPRINT_COLUMNS)
    one = footprint([T0_US + 5], [61234.56], [0.25], [True], bin_size=0.5, imbalance_volume=0.0)
    assert one.index.tolist() == [(T0_US, 61234.5)]
    row = one.iloc[0]
    assert (row.ask_volume, row.bid_volume, row.delta, row.trades) == (0.25, 0.0, 0.25, 1)
    assert not row.bid_imbalance and not row.ask_imbalance  # no next bin


def test_all_trades_in_one_bin_have_no_imbalance() -> None:
    fp = footprint([T0_US, T0_US + 1, T0_US + 2], [100.1, 99.8, 100.4], [3.0, 1.0, 2.0], [False, False, True],
                   bin_size=1.0, imbalance_volume=0.0)
    assert len(fp) == 1
    row = fp.iloc[0]
    assert (row.bid_volume, row.ask_volume, row.total_volume, row.bid_trades, row.ask_trades) == (4.0, 2.0, 6.0, 2, 1)
    assert not row.bid_imbalance and not row.ask_imbalance


def test_candles_open_on_whole_timeframes_and_imbalances_stay_inside_a_candle() -> None:
    assert candle_open_us([T0_US + 59_999_999, T0_US + 60_000_000], "1m").tolist() == [T0_US, T0_US + 60_000_000]
    assert candle_open_us([T0_US + 3_600_000_000 + 7], "1h").tolist() == [T0_US + 3_600_000_000]
    with pytest.raises(ValueError, match="timeframe"):
        candle_open_us([0], "1w")
    # candle 1: bid 3 trades at 100; candle 2: 1 buy at 101. Not compared: no imbalance at 100.
    fp = footprint([T0_US, T0_US + 1, T0_US + 2, T0_US + 60_000_000], [100.0, 100.0, 100.0, 101.0],
                   [1.0, 1.0, 1.0, 1.0], [False, False, False, True], bin_size=1.0)
    assert fp.index.tolist() == [(T0_US, 100.0), (T0_US + 60_000_000, 101.0)]
    assert not fp.bid_imbalance.any()


# --- the real capture ---------------------------------------------------------------------------------------


@functools.cache
def real_trades() -> pd.DataFrame:
    """The capture's trades in Freqtrade's trades format (timestamp ms, date UTC), plus ts_us."""
    trades = [e for e in iter_events(BINANCE_BTCUSDT_FILES, progress=False) if type(e) is Trade]
    df = pd.DataFrame({
        "ts_us": np.array([t.ts_us for t in trades], dtype=np.int64),
        "id": [t.trade_id for t in trades],
        "type": None,
        "side": [t.side for t in trades],
        "price": np.array([t.price for t in trades]),
        "amount": np.array([t.amount for t in trades]),
    })
    df["timestamp"] = df.ts_us // 1000
    df["cost"] = df.price * df.amount
    df["date"] = pd.to_datetime(df.timestamp, unit="ms", utc=True)
    return df


def real_footprint(scale: float, **kwargs: Any) -> pd.DataFrame:
    df = real_trades()
    return footprint(df.ts_us, df.price, df.amount, df.side == "buy", bin_size=scale, **kwargs)


@pytest.mark.parametrize("scale", [0.5, 5.0])
def test_real_cells_equal_an_independent_pandas_groupby(scale: float) -> None:
    df = real_trades()
    fp = real_footprint(scale)
    expected = pd.DataFrame({
        "candle": df.date.dt.floor("1min"),
        "price": (df.price / scale).round() * scale,
        "bid": df.amount.where(df.side == "sell", 0.0),
        "ask": df.amount.where(df.side == "buy", 0.0),
        "n": 1,
    }).groupby(["candle", "price"]).sum()
    assert len(fp) == len(expected) > 100
    opens = pd.to_datetime(fp.index.get_level_values(0), unit="us", utc=True)
    assert opens.tolist() == expected.index.get_level_values(0).tolist()
    assert fp.index.get_level_values(1).tolist() == expected.index.get_level_values(1).tolist()
    np.testing.assert_allclose(fp.bid_volume, expected.bid, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fp.ask_volume, expected.ask, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fp.delta, expected.ask - expected.bid, rtol=1e-9, atol=1e-9)
    assert fp.trades.tolist() == expected.n.tolist()
    assert fp.index.get_level_values(0).nunique() == 12  # 23:54 .. 00:05
    assert fp.total_volume.sum() == pytest.approx(211.86101 + 226.05451, abs=1e-5)  # the two sessions' volume


def freqtrade_orderflow(scale: float, ratio: float, volume: float) -> pd.DataFrame:
    """Freqtrade's own per-candle order flow on the real trades, one row per 1m candle."""
    df = real_trades()
    opens = pd.date_range(df.date.min().floor("1min"), df.date.max().floor("1min"), freq="1min")
    candles = pd.DataFrame({"date": opens, "open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0, "volume": 0.0})
    config = {"timeframe": "1m", "orderflow": {"cache_size": 1500, "max_candles": 1500, "scale": scale,
                                               "stacked_imbalance_range": 3, "imbalance_volume": volume,
                                               "imbalance_ratio": ratio}}
    trades = df[["timestamp", "id", "type", "side", "price", "amount", "cost", "date"]].copy()
    out, _ = populate_dataframe_with_trades(None, config, candles, trades)
    return out


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside Freqtrade's code (pandas deprecation)
@pytest.mark.parametrize(("scale", "ratio", "volume"), [(0.5, 3, 1), (1.0, 3, 0.05), (5.0, 2, 0.5)])
def test_real_footprint_and_imbalances_equal_freqtrades_own_output(scale: float, ratio: float, volume: float) -> None:
    ft = freqtrade_orderflow(scale, ratio, volume)
    fp = real_footprint(scale, imbalance_ratio=ratio, imbalance_volume=volume)
    flags = 0
    for row in ft.itertuples():
        ours = fp.loc[int(row.date.value // 1000)]
        theirs_flow = pd.DataFrame.from_dict(row.orderflow, orient="index")
        theirs_imb = pd.DataFrame.from_dict(row.imbalances, orient="index")
        assert ours.index.tolist() == theirs_flow.index.tolist() == theirs_imb.index.tolist()
        np.testing.assert_allclose(ours.bid_volume, theirs_flow.bid_amount, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.ask_volume, theirs_flow.ask_amount, rtol=1e-12, atol=1e-12)
        assert ours.bid_trades.tolist() == theirs_flow.bid.tolist()
        assert ours.ask_trades.tolist() == theirs_flow.ask.tolist()
        assert ours.trades.tolist() == theirs_flow.total_trades.tolist()
        assert ours.bid_imbalance.tolist() == theirs_imb.bid_imbalance.tolist()
        assert ours.ask_imbalance.tolist() == theirs_imb.ask_imbalance.tolist()
        assert row.bid == pytest.approx(ours.bid_volume.sum()) and row.ask == pytest.approx(ours.ask_volume.sum())
        flags += int(ours.bid_imbalance.sum() + ours.ask_imbalance.sum())
    assert len(ft) == 12
    assert flags > 50  # the comparison saw imbalances, not only False (83, 338 and 83 of them)


def test_settings_default_to_freqtrades_documented_values_and_reject_a_bad_basis() -> None:
    s = HeliosSettings.from_dict({"footprint": {"imbalance_ratio": 4}})
    assert (s.footprint.imbalance_ratio, s.footprint.imbalance_volume, s.footprint.imbalance_basis) == (4.0, 1.0,
                                                                                                       "trades")
    assert (s.volume_profile.value_area_pct, s.volume_profile.value_area_step) == (70.0, 2)
    with pytest.raises(ConfigError, match=r"helios\.footprint\.imbalance_basis"):
        HeliosSettings.from_dict({"footprint": {"imbalance_basis": "notional"}})
    with pytest.raises(ConfigError, match=r"helios\.volume_profile\.value_area_step"):
        HeliosSettings.from_dict({"volume_profile": {"value_area_step": 3}})
