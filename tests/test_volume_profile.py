"""Volume profile: POC and value area worked by hand (both value-area steps, ties, edge cases), and on the bundled
Binance BTC/USDT capture against an independent pandas computation (per session, per window, running)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest

from helios_orderflow.core.events import Trade
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.importers.binance_raw import iter_events
from helios_orderflow.signals.volume_profile import (
    RunningProfile,
    price_bins,
    session_levels,
    session_profiles,
    value_area,
    volume_profile,
    window_profile,
)

MIDNIGHT_US = 1723161600_000_000  # 2024-08-09T00:00Z, inside the capture: two sessions


def _trades(volumes: dict[float, float]) -> tuple[list[float], list[float]]:
    """One trade per price level (bin size 1), amount = the level's volume."""
    return list(volumes), list(volumes.values())


# Levels 100..106 with volumes 4, 1, 2, 6, 3, 3, 1: total 20, 70 % = 14; POC 103 (6).
HAND = {100.0: 4.0, 101.0: 1.0, 102.0: 2.0, 103.0: 6.0, 104.0: 3.0, 105.0: 3.0, 106.0: 1.0}


def test_value_area_two_bins_at_a_time_by_hand() -> None:
    # Start at 103: inside 6.
    # above (104, 105) = 6 > below (102, 101) = 3: add above -> 12, area 103..105.
    # above (106) = 1 < below (102, 101) = 3: add below -> 15 >= 14, area 101..105.
    vp = volume_profile(*_trades(HAND), 1.0)
    assert vp.poc == 103.0
    assert (vp.val, vp.vah) == (100.5, 105.5)  # edges of bins 101 and 105
    assert vp.value_area_volume == 15.0
    assert vp.total_volume == 20.0 and vp.trades == 7
    assert vp.first_bin == 100 and vp.prices.tolist() == list(HAND)


def test_value_area_one_bin_at_a_time_by_hand_stops_at_exactly_70_percent() -> None:
    # Start at 103: 6. 104 (3) > 102 (2): 9. 105 (3) > 102 (2): 12. 106 (1) < 102 (2): 14 = 70 % exactly: stop.
    vp = volume_profile(*_trades(HAND), 1.0, value_area_step=1)
    assert vp.poc == 103.0
    assert (vp.val, vp.vah) == (101.5, 105.5)
    assert vp.value_area_volume == 14.0


def test_value_area_percentage_is_configurable() -> None:
    # 50 % = 10: 6, then (104, 105) = 6 > 3: 12 >= 10.
    vp = volume_profile(*_trades(HAND), 1.0, value_area_pct=50)
    assert (vp.val, vp.vah, vp.value_area_volume) == (102.5, 105.5, 12.0)
    full = volume_profile(*_trades(HAND), 1.0, value_area_pct=100)
    assert (full.val, full.vah, full.value_area_volume) == (99.5, 106.5, 20.0)


def test_value_area_tie_adds_both_sides() -> None:
    # 100..104: 1, 2, 5, 2, 1; total 11, 70 % = 7.7; POC 102.
    levels = {100.0: 1.0, 101.0: 2.0, 102.0: 5.0, 103.0: 2.0, 104.0: 1.0}
    # step 1: 103 (2) = 101 (2): both -> 9 >= 7.7, area 101..103.
    one = volume_profile(*_trades(levels), 1.0, value_area_step=1)
    assert (one.val, one.vah, one.value_area_volume) == (100.5, 103.5, 9.0)
    # step 2: (103, 104) = 3 = (101, 100) = 3: both -> 11, area 100..104.
    two = volume_profile(*_trades(levels), 1.0)
    assert (two.val, two.vah, two.value_area_volume) == (99.5, 104.5, 11.0)


@pytest.mark.parametrize(("levels", "poc"), [
    ({100.0: 3, 101.0: 1, 102.0: 3, 103.0: 1, 104.0: 3}, 102.0),  # three tied: the middle one
    ({100.0: 2, 101.0: 5, 102.0: 1, 103.0: 5}, 101.0),  # middle 101.5: 101 is 0.5 away, 103 is 1.5
    ({100.0: 5, 101.0: 1, 102.0: 1, 103.0: 5}, 100.0),  # both 1.5 from 101.5: the lower
])
def test_poc_tie_goes_to_the_bin_nearest_the_middle_then_the_lower(levels: dict[float, float], poc: float) -> None:
    assert volume_profile(*_trades(levels), 1.0).poc == poc


def test_empty_bins_inside_the_range_count_as_zero() -> None:
    # 100: 1, 101: -, 102: 5, 103: -, 104: 4; total 10, 70 % = 7. POC 102. step 1: 103 (0) = 101 (0): both -> 5;
    # 104 (4) > 100 (1): 9 >= 7. Area 101..104.
    vp = volume_profile([100.0, 102.0, 104.0], [1.0, 5.0, 4.0], 1.0, value_area_step=1)
    assert vp.volume.tolist() == [1.0, 0.0, 5.0, 0.0, 4.0]
    assert (vp.poc, vp.val, vp.vah, vp.value_area_volume) == (102.0, 100.5, 104.5, 9.0)


def test_no_trades_give_nan_levels() -> None:
    vp = volume_profile([], [], 1.0)
    assert math.isnan(vp.poc) and math.isnan(vp.vah) and math.isnan(vp.val)
    assert vp.total_volume == 0.0 and vp.value_area_volume == 0.0 and vp.trades == 0
    assert value_area([]) == (-1, -1, -1)
    assert all(math.isnan(x) for x in RunningProfile(1.0).levels())


def test_one_trade_is_its_own_poc_and_value_area() -> None:
    vp = volume_profile([61234.56], [0.25], 0.5)
    assert vp.poc == 61234.5  # 61234.56 / 0.5 = 122469.12 -> bin 122469
    assert (vp.val, vp.vah, vp.value_area_volume) == (61234.25, 61234.75, 0.25)


def test_all_trades_in_one_bin() -> None:
    vp = volume_profile([100.1, 99.9, 100.2, 100.0], [1.0, 2.0, 3.0, 4.0], 1.0, is_buy=[True, False, True, False])
    assert vp.volume.tolist() == [10.0]
    assert vp.buy_volume is not None and vp.sell_volume is not None
    assert (vp.buy_volume.tolist(), vp.sell_volume.tolist()) == ([4.0], [6.0])
    assert (vp.poc, vp.val, vp.vah, vp.value_area_volume) == (100.0, 99.5, 100.5, 10.0)


def test_bins_are_centred_on_multiples_and_edges_round_half_to_even() -> None:
    # 100.25 / 0.5 = 200.5 -> 200 (even); 100.75 / 0.5 = 201.5 -> 202; 100.74 -> 201
    assert price_bins([100.25, 100.75, 100.74, 100.0], 0.5).tolist() == [200, 202, 201, 200]
    with pytest.raises(ValueError, match="bin_size"):
        price_bins([1.0], 0.0)
    with pytest.raises(ValueError, match="value_area_step"):
        volume_profile([1.0], [1.0], 1.0, value_area_step=3)


def test_running_profile_grows_both_ways_and_matches_the_batch_profile() -> None:
    run = RunningProfile(1.0, value_area_step=1)
    prices = [500.0, 501.0, 1000.0, 2.0, 499.0, 500.0, 3000.0]
    amounts = [1.0, 2.0, 0.5, 0.25, 4.0, 1.5, 0.1]
    sides = [True, False, True, True, False, True, False]
    for p, q, b in zip(prices, amounts, sides, strict=True):
        run.add(p, q, b)
    batch = volume_profile(prices, amounts, 1.0, is_buy=sides, value_area_step=1)
    got = run.profile()
    assert got.first_bin == batch.first_bin == 2
    np.testing.assert_array_equal(got.volume, batch.volume)
    assert got.buy_volume is not None and batch.buy_volume is not None
    np.testing.assert_array_equal(got.buy_volume, batch.buy_volume)
    assert (got.poc, got.vah, got.val) == (batch.poc, batch.vah, batch.val) == run.levels()
    assert got.poc == 499.0
    run.reset()
    assert run.trades == 0 and math.isnan(run.levels()[0])


# --- the real capture ---------------------------------------------------------------------------------------


@functools.cache
def real_trades() -> pd.DataFrame:
    trades = [e for e in iter_events(BINANCE_BTCUSDT_FILES, progress=False) if type(e) is Trade]
    return pd.DataFrame({
        "ts_us": np.array([t.ts_us for t in trades], dtype=np.int64),
        "price": np.array([t.price for t in trades]),
        "amount": np.array([t.amount for t in trades]),
        "side": [t.side for t in trades],
    })


def pandas_profile(trades: pd.DataFrame, bin_size: float, pct: float = 70.0,
                   step: int = 2) -> tuple[float, float, float, float, pd.Series]:
    """(poc, val, vah, volume inside, volume per bin): an independent pandas construction."""
    level = (trades["price"] / bin_size).round().astype(np.int64)
    per_bin = trades.groupby(level)["amount"].sum()
    per_bin = per_bin.reindex(range(per_bin.index.min(), per_bin.index.max() + 1), fill_value=0.0)
    top = per_bin[per_bin == per_bin.max()].index
    middle = (per_bin.index[0] + per_bin.index[-1]) / 2
    poc = min(top, key=lambda k: (abs(k - middle), k))
    area = [poc]  # bins inside, grown by the cumulative construction
    target = pct / 100 * per_bin.sum()
    while per_bin[area].sum() < target * (1 - 1e-9):
        above = [k for k in range(max(area) + 1, max(area) + 1 + step) if k in per_bin.index]
        below = [k for k in range(min(area) - step, min(area)) if k in per_bin.index]
        up = per_bin[above].sum() if above else -1.0
        down = per_bin[below].sum() if below else -1.0
        if up >= down:
            area += above
        if down >= up:
            area += below
    return (poc * bin_size, (min(area) - 0.5) * bin_size, (max(area) + 0.5) * bin_size,
            per_bin[area].sum(), per_bin)


def assert_same(vp_levels: tuple[float, float, float, float], expected: tuple[float, ...]) -> None:
    assert vp_levels[:3] == pytest.approx(expected[:3], abs=1e-9)
    assert vp_levels[3] == pytest.approx(expected[3], rel=1e-9)


@pytest.mark.parametrize(("bin_size", "step"), [(1.0, 2), (5.0, 2), (0.5, 1)])
def test_real_session_profiles_equal_an_independent_pandas_profile(bin_size: float, step: int) -> None:
    df = real_trades()
    profiles = session_profiles(df.ts_us, df.price, df.amount, bin_size, is_buy=df.side == "buy",
                                value_area_step=step)
    assert list(profiles) == [MIDNIGHT_US - 86_400_000_000, MIDNIGHT_US]
    for start, vp in profiles.items():
        part = df[(df.ts_us >= start) & (df.ts_us < start + 86_400_000_000)]
        poc, val, vah, inside, per_bin = pandas_profile(part, bin_size, step=step)
        assert_same((vp.poc, vp.val, vp.vah, vp.value_area_volume), (poc, val, vah, inside))
        assert vp.trades == len(part)
        np.testing.assert_allclose(vp.volume, per_bin.to_numpy(), rtol=1e-12)
        assert vp.buy_volume is not None
        buys = part[part.side == "buy"].groupby((part.price / bin_size).round().astype(np.int64))["amount"].sum()
        np.testing.assert_allclose(vp.buy_volume[buys.index - vp.first_bin], buys.to_numpy(), rtol=1e-12)
        assert vp.value_area_volume >= 0.7 * vp.total_volume
        assert vp.val < vp.poc < vp.vah
    if bin_size == 1.0:  # the numbers that matter (1 USDT bins; the pandas construction agrees with them)
        day8, day9 = profiles.values()
        assert (day8.trades, day8.poc, day8.val, day8.vah) == (9738, 61688.0, 61649.5, 61744.5)
        assert (day8.value_area_volume, day8.total_volume) == pytest.approx((148.59468, 211.86101), abs=1e-5)
        assert (day9.trades, day9.poc, day9.val, day9.vah) == (10166, 61570.0, 61555.5, 61660.5)
        assert (day9.value_area_volume, day9.total_volume) == pytest.approx((158.52617, 226.05451), abs=1e-5)


def test_real_visible_range_profile_equals_pandas_on_the_window() -> None:
    df = real_trades()
    start, end = int(df.ts_us.iloc[0]) + 120_000_000, int(df.ts_us.iloc[0]) + 300_000_000
    vp = window_profile(df.ts_us, df.price, df.amount, 2.0, start, end)
    part = df[(df.ts_us >= start) & (df.ts_us < end)]
    poc, val, vah, inside, _ = pandas_profile(part, 2.0)
    assert_same((vp.poc, vp.val, vp.vah, vp.value_area_volume), (poc, val, vah, inside))
    assert vp.trades == len(part) > 1000


def test_real_running_profile_equals_the_batch_profile_bit_for_bit() -> None:
    df = real_trades()
    run = RunningProfile(1.0)
    batch = volume_profile(df.price, df.amount, 1.0, is_buy=df.side == "buy")
    half = len(df) // 2
    for p, q, s in zip(df.price[:half].tolist(), df.amount[:half].tolist(), df.side[:half].tolist(), strict=True):
        run.add(p, q, s == "buy")
    # at half way: the profile of the first half, no later trade in it
    assert run.levels() == (lambda v: (v.poc, v.vah, v.val))(volume_profile(df.price[:half], df.amount[:half], 1.0))
    run.add_many(df.price[half:], df.amount[half:], (df.side[half:] == "buy").to_numpy())
    got = run.profile()
    assert got.first_bin == batch.first_bin and got.trades == batch.trades == len(df)
    np.testing.assert_array_equal(got.volume, batch.volume)
    assert (got.poc, got.vah, got.val, got.value_area_volume) == (batch.poc, batch.vah, batch.val,
                                                                  batch.value_area_volume)


def test_real_session_levels_per_candle_use_only_the_session_so_far_and_the_previous_session() -> None:
    df = real_trades()
    first_open = int(df.ts_us.min()) // 60_000_000 * 60_000_000
    closes = np.arange(first_open + 60_000_000, int(df.ts_us.max()) + 60_000_001, 60_000_000)
    levels = session_levels(df.ts_us, df.price, df.amount, 1.0, closes)
    assert len(levels) == len(closes) == 12
    prev_day = volume_profile(df.price[df.ts_us < MIDNIGHT_US], df.amount[df.ts_us < MIDNIGHT_US], 1.0)
    for close, row in zip(closes.tolist(), levels.itertuples(), strict=True):
        session = MIDNIGHT_US if close > MIDNIGHT_US else MIDNIGHT_US - 86_400_000_000
        part = df[(df.ts_us >= session) & (df.ts_us < close)]
        so_far = volume_profile(part.price, part.amount, 1.0)
        assert (row.session_poc, row.session_vah, row.session_val) == (so_far.poc, so_far.vah, so_far.val)
        if session == MIDNIGHT_US:  # the candle closing at midnight still belongs to the day it ends
            assert (row.prev_session_poc, row.prev_session_vah, row.prev_session_val) == (
                prev_day.poc, prev_day.vah, prev_day.val)
        else:
            assert math.isnan(row.prev_session_poc)
    assert levels.session_poc.notna().all()
