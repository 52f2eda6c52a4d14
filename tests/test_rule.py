"""The entry and stop rule HeliosStrategy trades on (helios_orderflow/freqtrade/rule.py): entry signals from
the per-candle columns, the order-time view of a real engine state, the LIMIT price, the stop behind the
wall, the rejection reasons; property tests on random books."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _scenario import Feed, S, ask_wall_confirmed, bid_wall_confirmed
from hypothesis import given
from hypothesis import strategies as st

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.freqtrade.risk import position_size
from helios_orderflow.freqtrade.rule import (
    EntryThresholds,
    MarketView,
    entry_price,
    entry_rejection,
    entry_signals,
    exit_signals,
    stop_plan,
    tightened_stop,
)


def _bull_state() -> Feed:
    """Bid wall 10 at 995.5 (bin [995, 996)) confirmed; sellers hit it for 5.5 while it is refilled: bullish
    absorption. Best bid 995.5, best ask 1000.5, tick 0.5."""
    f = bid_wall_confirmed()
    f.trade(3 * S + 200_000, 995.5, 3.0, "sell")
    f.delta(3 * S + 300_000, bids=[(995.5, 12.0)])
    f.trade(3 * S + 400_000, 995.5, 2.5, "sell")
    return f


def _bear_state() -> Feed:
    f = ask_wall_confirmed()
    f.trade(3 * S + 200_000, 1004.5, 5.0, "buy")
    return f


# ---- order time: the view of a real engine state, entry price, stop, size, rejection ----------------------


def test_long_joins_the_bid_and_its_stop_sits_one_tick_behind_the_bid_wall() -> None:
    state = _bull_state().engine.snapshot()
    assert state.absorption is not None and state.absorption.direction == "bull"
    view = MarketView.of_engine(state)
    assert (view.best_bid, view.best_ask, view.bid_walls, view.tick) == (995.5, 1000.5, (995.0,), 0.5)
    entry = entry_price(view, "long", cross_book=False, proposed_rate=999.0)
    assert entry == 995.5
    # wall far edge 995.0; stop 995.0 - max(tick 0.5, 2 bps x 995.5 = 0.199) = 994.5
    assert stop_plan(view, "long", entry, stop_buffer_bps=2.0, max_loss=0.02) == (994.5, 995.0)
    size = position_size(10_000.0, 0.015, entry, 994.5, 1e9)
    assert size.amount == 150.0 and size.risk_amount == 150.0  # 10000 x 1.5 % / (995.5 - 994.5)
    capped = position_size(10_000.0, 0.015, entry, 994.5, 995.5 * 10)
    assert capped.capped and capped.amount == 10.0
    assert entry_price(view, "long", cross_book=True, proposed_rate=999.0) == 1000.5


def test_entry_is_rejected_for_a_wide_spread_a_crossing_rate_or_no_protecting_wall() -> None:
    view = MarketView.of_engine(_bull_state().engine.snapshot())
    assert view.spread_bps == pytest.approx(5.0 / 998.0 * 1e4)  # 50.1 bps
    assert entry_rejection(view, "long", 995.5, max_spread_bps=60.0, cross_book=False) == ""
    assert entry_rejection(view, "long", 995.5, max_spread_bps=10.0, cross_book=False) == (
        "spread 50.10 bps above the limit 10 bps")
    assert entry_rejection(view, "long", 1001.0, 60.0, cross_book=False).startswith("rate 1001 would cross the book")
    assert entry_rejection(view, "long", 1001.0, 60.0, cross_book=True) == ""
    # At or below the wall's far edge no wall protects a long any more.
    assert entry_rejection(view, "long", 995.0, 60.0, False) == (
        "signal gone: no bid wall below 995 protects the trade")
    # No ask wall in this book: a short has nothing to hide behind.
    assert entry_rejection(view, "short", 1000.5, 60.0, False).startswith("signal gone: no ask wall above")


def test_short_joins_the_ask_with_its_stop_one_tick_above_the_ask_wall() -> None:
    view = MarketView.of_engine(_bear_state().engine.snapshot())
    entry = entry_price(view, "short", cross_book=False, proposed_rate=0.0)
    assert entry == 1004.5
    assert stop_plan(view, "short", entry, 2.0, 0.02) == (1005.5, 1005.0)


def test_an_unusable_book_rejects_and_falls_back_to_the_max_loss_stop() -> None:
    g = _bull_state()
    g.uid += 3
    g.delta(3 * S + 500_000, bids=[(995.5, 1.0)])  # a sequence gap: the book is out of sync
    view = MarketView.of_engine(g.engine.snapshot())
    assert not view.ok
    assert entry_rejection(view, "long", 995.5, 60.0, False) == (
        "the engine has no usable book (out of sync, crossed or one-sided)")
    assert entry_price(view, "long", False, proposed_rate=999.0) == 999.0
    assert stop_plan(view, "long", 1000.0, 2.0, 0.02) == (980.0, None)
    assert stop_plan(view, "short", 1000.0, 2.0, 0.02) == (1020.0, None)


def test_a_stop_only_ever_tightens() -> None:
    assert tightened_stop("long", 990.0, 985.0) == 990.0 and tightened_stop("long", 990.0, 992.0) == 992.0
    assert tightened_stop("short", 1010.0, 1015.0) == 1010.0 and tightened_stop("short", 1010.0, 1008.0) == 1008.0


# ---- per candle: entry and exit signals from the dataframe ---------------------------------------------------


def _frame(**columns: list[float]) -> pd.DataFrame:
    """Candles with a usable book and no signal, closing at 1000; ``columns`` override per row."""
    n = len(next(iter(columns.values())))
    base = {"close": [1000.0] * n, "rsi": [50.0] * n, "of_book_ok": [1] * n, "of_absorption_bull": [0] * n,
            "of_absorption_bear": [0] * n, "of_bid_wall_price": [math.nan] * n, "of_ask_wall_price": [math.nan] * n,
            "of_exhaustion_up": [0] * n, "of_exhaustion_down": [0] * n}
    base.update(columns)
    return pd.DataFrame(base)


def _longs(frame: pd.DataFrame, **thresholds: float) -> list[bool]:
    return entry_signals(frame, EntryThresholds(**thresholds))[0].tolist()  # type: ignore[arg-type]


def test_long_needs_absorption_rsi_below_30_a_usable_book_and_a_bid_wall_below_the_close() -> None:
    setup = {"of_absorption_bull": [1], "rsi": [29.9], "of_bid_wall_price": [995.0]}
    assert _longs(_frame(**setup)) == [True]  # type: ignore[arg-type]
    for broken in ({"of_absorption_bull": [0]}, {"rsi": [30.0]}, {"rsi": [math.nan]}, {"of_book_ok": [0]},
                   {"of_bid_wall_price": [1000.0]}, {"of_bid_wall_price": [1001.0]},
                   {"of_bid_wall_price": [math.nan]}):
        assert _longs(_frame(**{**setup, **broken})) == [False], broken  # type: ignore[arg-type]


def test_absorption_counts_for_absorption_candles_and_the_wall_needs_wall_min_bps_of_room() -> None:
    # Absorption one candle before the candle where RSI and the wall line up.
    f = _frame(of_absorption_bull=[1, 0, 0], rsi=[40.0, 25.0, 25.0], of_bid_wall_price=[995.0] * 3)
    assert _longs(f) == [False, False, False]
    assert _longs(f, absorption_candles=2) == [False, True, False]
    assert _longs(f, absorption_candles=3) == [False, True, True]
    # The wall 5 bps below the close: enough room for a 4.9 bps minimum, not for 5.
    g = _frame(of_absorption_bull=[1], rsi=[25.0], of_bid_wall_price=[999.5])
    assert _longs(g, wall_min_bps=4.9) == [True] and _longs(g, wall_min_bps=5.0) == [False]
    assert _longs(g, rsi_long_below=25.0) == [False] and _longs(g, rsi_long_below=26.0) == [True]
    with pytest.raises(ConfigError, match="absorption_candles must be >= 1"):
        EntryThresholds(absorption_candles=0)


def test_short_is_the_mirror_only_when_allowed_and_a_candle_that_is_both_is_a_long() -> None:
    f = _frame(of_absorption_bear=[1, 1], rsi=[70.1, 70.1], of_ask_wall_price=[1005.0, 1005.0],
               of_absorption_bull=[0, 1], of_bid_wall_price=[math.nan, 995.0])
    long, short = entry_signals(f, EntryThresholds(rsi_long_below=100.0))
    assert long.tolist() == [False, True] and short.tolist() == [True, False]
    assert entry_signals(f, EntryThresholds(), allow_short=False)[1].tolist() == [False, False]
    assert entry_signals(_frame(of_absorption_bear=[1], rsi=[70.0], of_ask_wall_price=[1005.0]),
                         EntryThresholds())[1].tolist() == [False]


def test_exhaustion_exits_the_trade_of_its_direction_on_a_usable_book() -> None:
    f = _frame(of_exhaustion_up=[1, 0, 1], of_exhaustion_down=[0, 1, 0], of_book_ok=[1, 1, 0])
    exit_long, exit_short = exit_signals(f)
    assert exit_long.tolist() == [True, False, False] and exit_short.tolist() == [False, True, False]


# ---- properties on random books ----------------------------------------------------------------------------


@given(st.floats(900, 1100), st.floats(0.01, 20), st.lists(st.floats(800, 1200), max_size=4),
       st.lists(st.floats(800, 1200), max_size=4), st.sampled_from(["long", "short"]), st.booleans(),
       st.floats(0, 10), st.floats(0, 50), st.floats(10, 1e7))
def test_no_stop_is_on_the_wrong_side_and_no_size_above_the_cap(
        bid: float, spread: float, bid_walls: list[float], ask_walls: list[float], side: str, cross: bool,
        tick: float, buffer_bps: float, cap: float) -> None:
    view = MarketView((), bid, bid + spread, tuple(bid_walls), tuple(ask_walls), tick)
    entry = entry_price(view, side, cross, proposed_rate=math.nan)  # type: ignore[arg-type]
    assert entry == (bid if (side == "long") != cross else bid + spread)
    stop, wall = stop_plan(view, side, entry, buffer_bps, 0.02)  # type: ignore[arg-type]
    assert stop < entry if side == "long" else stop > entry
    if wall is None:
        assert stop == pytest.approx(entry * (0.98 if side == "long" else 1.02))
    else:
        # behind the wall (at its far edge only with no tick and no buffer)
        assert (wall < entry and stop <= wall) if side == "long" else (wall > entry and stop >= wall)
    if entry_rejection(view, side, entry, 1e9, cross) == "":  # type: ignore[arg-type]
        assert wall is not None  # a confirmed entry always has a wall to hide its stop behind
    size = position_size(10_000.0, 0.015, entry, stop, cap)
    assert size.stake <= cap and size.amount * entry <= cap * (1 + 1e-12)
    assert size.risk_amount <= 10_000.0 * 0.015 * (1 + 1e-9)


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.floats(0, 100), st.floats(900, 1100),
                          st.integers(0, 1)), min_size=1, max_size=30),
       st.integers(1, 5), st.floats(0, 10))
def test_a_signal_only_ever_uses_its_own_and_earlier_candles(
        rows: list[tuple[int, int, float, float, int]], n: int, room: float) -> None:
    frame = _frame(of_absorption_bull=[r[0] for r in rows], of_absorption_bear=[r[1] for r in rows],
                   rsi=[r[2] for r in rows], of_bid_wall_price=[r[3] for r in rows],
                   of_ask_wall_price=[r[3] + 100.0 for r in rows], of_book_ok=[r[4] for r in rows])
    thresholds = EntryThresholds(absorption_candles=n, wall_min_bps=room)
    long, short = entry_signals(frame, thresholds)
    for cut in range(1, len(rows)):
        head_long, head_short = entry_signals(frame.iloc[:cut], thresholds)
        assert np.array_equal(head_long.to_numpy(), long.to_numpy()[:cut])
        assert np.array_equal(head_short.to_numpy(), short.to_numpy()[:cut])
