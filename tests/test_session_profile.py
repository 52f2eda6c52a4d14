"""Session volume profile columns per candle (``session_poc/vah/val``, ``prev_session_poc/vah/val``): hand-worked
values, equality with ``signals.volume_profile.session_levels`` on the real capture, and no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _btcusdt import SYMBOL
from _btcusdt import trades as real_trades
from hypothesis import given, settings
from hypothesis import strategies as st

from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.features.backtest import dates_us
from helios_orderflow.features.compute import compute_features
from helios_orderflow.signals.volume_profile import SESSION_LEVEL_COLUMNS, auto_profile_bin, session_levels

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
DAY0_US = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC
ONE = HeliosSettings.from_dict({"volume_profile": {"bin_size": 1.0}})


def trade(ts_us: int, price: float, amount: float, side: str = "buy", n: int = 0) -> Trade:
    return Trade("kraken", "BTC/USD", ts_us, ts_us, price, amount, side, str(n))  # type: ignore[arg-type]


def levels(frame: pd.DataFrame, when_us: int) -> tuple[float, ...]:
    row = frame[frame["date"] == pd.Timestamp(when_us, unit="us", tz="UTC")].iloc[0]
    return tuple(float(row[c]) for c in SESSION_LEVEL_COLUMNS)


def test_hand_worked_session_and_previous_session_levels_per_hourly_candle() -> None:
    """Bin 1.0, value area 70 % grown two bins at a time.
    Day 0, 00:xx: 100 x 2, 101 x 5 -> POC 101, and 5 of 7 >= 70 %: the value area is the POC bin, 100.5-101.5.
    Day 0, 01:xx: 102 x 1, 103 x 1 -> bins 100..103 hold 2, 5, 1, 1: from 101, up (102+103 = 2) ties down (100 = 2),
    both are added: 99.5-103.5. 23:00 has no trade: still the day's levels (it closes at the anchor, in day 0).
    Day 1, 00:xx: 105 x 1 -> POC 105, 104.5-105.5; the previous session is day 0's whole profile."""
    nan = math.nan
    events = [
        trade(DAY0_US + 60_000_000, 100.0, 2.0, n=1),
        trade(DAY0_US + 120_000_000, 101.0, 5.0, "sell", 2),
        trade(DAY0_US + HOUR_US + 1, 102.0, 1.0, n=3),
        trade(DAY0_US + HOUR_US + 2, 103.0, 1.0, n=4),
        trade(DAY0_US + 23 * HOUR_US + 5, 103.0, 0.0, n=5),  # a zero-amount print: keeps the clock moving
        trade(DAY0_US + DAY_US + 10, 105.0, 1.0, n=6),
        trade(DAY0_US + DAY_US + HOUR_US, 105.0, 0.0, n=7),
    ]
    f = compute_features(events, "BTC/USD", "1h", ONE)
    assert np.allclose(levels(f, DAY0_US), (101.0, 101.5, 100.5, nan, nan, nan), equal_nan=True)
    assert np.allclose(levels(f, DAY0_US + HOUR_US), (101.0, 103.5, 99.5, nan, nan, nan), equal_nan=True)
    assert np.allclose(levels(f, DAY0_US + 23 * HOUR_US), (101.0, 103.5, 99.5, nan, nan, nan), equal_nan=True)
    assert levels(f, DAY0_US + DAY_US) == (105.0, 105.5, 104.5, 101.0, 103.5, 99.5)
    assert f["had_book"].sum() == 0 and f["book_ok"].sum() == 0  # trades only: no book, ever


def test_a_session_without_trades_has_nan_levels_and_makes_the_next_previous_session_nan() -> None:
    events = [trade(DAY0_US, 100.0, 1.0, n=1), trade(DAY0_US + 2 * DAY_US + 30, 200.0, 1.0, n=2)]
    f = compute_features(events, "BTC/USD", "1d", ONE)
    assert list(f["session_poc"].fillna(-1)) == [100.0, -1.0, 200.0]
    assert list(f["prev_session_poc"].fillna(-1)) == [-1.0, 100.0, -1.0]


def test_auto_bin_is_one_basis_point_of_the_sessions_first_price_rounded_to_1_2_5() -> None:
    assert [auto_profile_bin(p) for p in (61_700.0, 100_000.0, 3_000.0, 0.5)] == [5.0, 10.0, 0.2, 0.00005]
    # the engine picks it per session from the session's first trade: 100000 -> 10.0 bins, POC on the grid.
    f = compute_features([trade(DAY0_US, 100_004.0, 1.0, n=1), trade(DAY0_US + 1, 100_016.0, 3.0, n=2)],
                         "BTC/USD", "1m")
    assert (f["session_poc"].iloc[0], f["session_vah"].iloc[0], f["session_val"].iloc[0]) == (100_020.0, 100_025.0,
                                                                                           100_015.0)


def test_engine_session_columns_equal_session_levels_on_the_real_capture_across_midnight() -> None:
    """The real BTCUSDT trades (they span midnight UTC), fed in exchange-time order: the engine's columns at each
    5-minute close equal ``session_levels`` of the same trades (auto bin of each session's first price)."""
    trades = sorted(real_trades(), key=lambda t: t.ts_us)
    f = compute_features(trades, SYMBOL, "5m", include_partial=False)
    ts = np.array([t.ts_us for t in trades])
    price = np.array([t.price for t in trades])
    amount = np.array([t.amount for t in trades])
    closes = dates_us(f["date"]) + 300_000_000
    midnight = (int(ts[0]) // DAY_US + 1) * DAY_US
    assert closes[0] < midnight < closes[-1]
    expected = []
    for start, stop, first in ((0, midnight, price[0]), (midnight, 1 << 62, price[ts >= midnight][0])):
        part = (closes > start) & (closes <= stop)
        expected.append(session_levels(ts, price, amount, auto_profile_bin(float(first)), closes[part]))
    exp = pd.concat(expected, ignore_index=True)
    # the previous session's levels use the previous session's own bin: compare the current ones with the
    # function, and check the previous ones against the first session's final levels.
    got = f[list(SESSION_LEVEL_COLUMNS)].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.iloc[:, :3], exp.iloc[:, :3])
    after = closes > midnight
    last_before = got.loc[~after, ["session_poc", "session_vah", "session_val"]].iloc[-1].to_numpy()
    assert (got.loc[after, ["prev_session_poc", "prev_session_vah", "prev_session_val"]].to_numpy()
            == last_before).all()
    assert got.loc[~after, "prev_session_poc"].isna().all()


def _stream(draw_prices: list[float], draw_gaps: list[int]) -> list[Trade]:
    ts = DAY0_US + np.cumsum(draw_gaps)
    return [trade(int(t), p, 0.5 + (i % 3), "buy" if i % 2 else "sell", i)
            for i, (t, p) in enumerate(zip(ts, draw_prices, strict=False))]


@settings(max_examples=25)
@given(
    prices=st.lists(st.integers(90, 110).map(float), min_size=2, max_size=60),
    gaps=st.lists(st.integers(0, 4 * HOUR_US), min_size=60, max_size=60),
    cut=st.integers(1, 59),
    other=st.lists(st.integers(80, 130).map(float), min_size=0, max_size=20),
)
def test_no_look_ahead_changing_trades_after_t_changes_no_row_closed_by_t(
        prices: list[float], gaps: list[int], cut: int, other: list[float]) -> None:
    events = _stream(prices, gaps)
    cut = min(cut, len(events) - 1)
    t_us = events[cut].ts_us
    before = [e for e in events if e.ts_us < t_us]
    changed = before + [trade(t_us + 1000 * i, p, 7.0, "buy", 1000 + i) for i, p in enumerate(other)]
    a = compute_features(events, "BTC/USD", "1h", ONE)
    b = compute_features(changed, "BTC/USD", "1h", ONE)
    closed = lambda f: f[f["date"] + pd.Timedelta(hours=1) <= pd.Timestamp(t_us, unit="us", tz="UTC")]  # noqa: E731
    # A candle's row exists once an event at or past its close arrives (or as the last, open row): the cut
    # stream may lack the empty candles between its end and T; every row it has is equal.
    a_closed = closed(a).set_index("date")
    b_closed = closed(b).set_index("date")
    assert set(b_closed.index) <= set(a_closed.index)
    pd.testing.assert_frame_equal(a_closed.loc[b_closed.index], b_closed)


@pytest.mark.parametrize("anchor", ["00:00", "13:30"])
def test_sessions_follow_the_configured_anchor(anchor: str) -> None:
    s = HeliosSettings.from_dict({"volume_profile": {"bin_size": 1.0}, "flow": {"session_anchor_utc": anchor}})
    noon = DAY0_US + 13 * HOUR_US + 29 * 60_000_000  # 13:29: in the session before a 13:30 anchor
    events = [trade(noon, 100.0, 1.0, n=1), trade(noon + 120_000_000, 120.0, 1.0, n=2),
              trade(noon + 240_000_000, 120.0, 0.0, n=3)]
    f = compute_features(events, "BTC/USD", "1m", s)
    last = f.iloc[-1]
    if anchor == "13:30":
        assert (last["session_poc"], last["prev_session_poc"]) == (120.0, 100.0)
    else:
        assert last["session_poc"] == 100.0 and math.isnan(last["prev_session_poc"])  # tie 100/120: the lower
