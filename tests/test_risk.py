"""Risk: stop behind the wall, the clamped risk fraction, the capped position size (with property tests)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helios_orderflow.core.settings import RiskSettings
from helios_orderflow.freqtrade.risk import clamp_risk, position_size, stop_behind_wall


def test_risk_fraction_is_clamped_to_one_to_two_percent() -> None:
    assert clamp_risk(0.005) == 0.01 and clamp_risk(0.05) == 0.02 and clamp_risk(0.015) == 0.015
    assert clamp_risk(math.nan) == 0.01


def test_stop_sits_one_tick_or_the_buffer_behind_the_wall() -> None:
    # long: wall far edge 995.0, entry 995.5, tick 0.5, 2 bps of 995.5 = 0.1991 -> one tick wins
    assert stop_behind_wall("long", 995.0, 995.5, 0.5, 2.0) == 994.5
    # 10 bps = 0.9955 > tick
    assert stop_behind_wall("long", 995.0, 995.5, 0.5, 10.0) == pytest.approx(995.0 - 0.9955)
    assert stop_behind_wall("short", 1005.0, 1004.5, 0.5, 2.0) == 1005.5
    # a wall on the wrong side of the entry gives no stop
    assert stop_behind_wall("long", 996.0, 995.5, 0.5, 0.0) is None
    assert stop_behind_wall("short", 1004.0, 1004.5, 0.5, 0.0) is None


def test_size_is_equity_times_risk_over_stop_distance_capped_by_stake() -> None:
    s = position_size(10_000.0, 0.015, 100.0, 98.0, 1e9)
    assert (s.amount, s.stake, s.risk_amount, s.capped) == pytest.approx((75.0, 7500.0, 150.0, False))
    c = position_size(10_000.0, 0.015, 100.0, 98.0, 5000.0)
    assert (c.amount, c.stake, c.risk_amount, c.capped) == pytest.approx((50.0, 5000.0, 100.0, True))
    assert position_size(10_000.0, 0.015, 100.0, 100.0, 5000.0).amount == 0.0
    assert position_size(-1.0, 0.015, 100.0, 99.0, 5000.0).amount == 0.0


prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False)


@given(st.sampled_from(["long", "short"]), prices, prices, st.floats(0, 10), st.floats(0, 500))
def test_stop_is_never_on_the_wrong_side_of_the_entry(side: str, wall: float, entry: float, tick: float,
                                                      bps: float) -> None:
    stop = stop_behind_wall(side, wall, entry, tick, bps)  # type: ignore[arg-type]
    if stop is not None:
        assert stop < entry if side == "long" else stop > entry
        assert stop <= wall if side == "long" else stop >= wall  # equal only with tick 0 and buffer 0


@given(st.floats(-1e9, 1e12, allow_nan=False), st.floats(-1, 1, allow_nan=False), prices, prices,
       st.floats(-1e6, 1e12, allow_nan=False))
def test_size_never_exceeds_the_available_stake_nor_the_risk(equity: float, risk: float, entry: float, stop: float,
                                                            stake: float) -> None:
    s = position_size(equity, risk, entry, stop, stake)
    assert s.amount >= 0 and s.stake >= 0
    if s.amount > 0:
        assert s.stake <= stake
        assert s.amount * entry <= stake * (1 + 1e-12)
        assert s.risk_amount <= equity * RiskSettings().max_risk_fraction * (1 + 1e-9)


def test_an_equity_so_small_that_the_size_would_be_subnormal_gives_no_size() -> None:
    # found by Hypothesis: at the smallest normal equity the risk came out 1.3e-9 above the budget
    s = position_size(2.2250738585072014e-308, 1.0, 5.0, 270455.0, 1.0)
    assert (s.amount, s.stake, s.risk_amount) == (0.0, 0.0, 0.0)
    assert position_size(1000.0, 0.01, 100.0, 99.0, 1e9).amount == 10.0
