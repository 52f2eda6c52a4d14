"""Decision layer: STRONG_BUY on bullish absorption at a bid wall with RSI < 30, STRONG_SELL mirrored, HOLD
otherwise; LIMIT entry, stop behind the protecting wall; property tests on random states."""

from __future__ import annotations

import dataclasses

import numpy as np
from _scenario import Feed, S, ask_wall_confirmed, bid_wall_confirmed
from hypothesis import given
from hypothesis import strategies as st

from helios_orderflow.core.settings import DecisionSettings
from helios_orderflow.engine.pair_engine import PairState
from helios_orderflow.freqtrade.decision import decide, decide_from_candles, rsi_last
from helios_orderflow.signals.walls import Wall


def _bull_state() -> Feed:
    """Bid wall 10 at 995.5 (bin [995, 996)) confirmed; sellers hit it for 5.5 while it is refilled."""
    f = bid_wall_confirmed()
    f.trade(3 * S + 200_000, 995.5, 3.0, "sell")
    f.delta(3 * S + 300_000, bids=[(995.5, 12.0)])
    f.trade(3 * S + 400_000, 995.5, 2.5, "sell")
    return f


def _bear_state(**sections: object) -> Feed:
    f = ask_wall_confirmed(**sections)
    f.trade(3 * S + 200_000, 1004.5, 5.0, "buy")
    return f


def test_strong_buy_with_limit_at_the_bid_and_stop_behind_the_wall() -> None:
    f = _bull_state()
    st_ = f.engine.snapshot()
    d = decide(st_, rsi=25.0, settings=f.engine.settings)
    assert (d.action, d.side, d.order_type) == ("STRONG_BUY", "long", "limit")
    # entry = best bid 995.5; wall far edge 995.0; stop 995.0 - max(tick 0.5, 2 bps x 995.5 = 0.199) = 994.5
    assert (d.entry_price, d.wall_price, d.stop_price, d.risk_fraction) == (995.5, 995.0, 994.5, 0.015)
    assert d.reasons == ("absorption_bull", "rsi_oversold", "stop_behind_bid_wall")
    size = d.size(10_000.0, 1e9, f.engine.settings)
    assert size.amount == 150.0 and size.risk_amount == 150.0  # 10000 x 1.5 % / (995.5 - 994.5)
    capped = d.size(10_000.0, 995.5 * 10, f.engine.settings)
    assert capped.capped and capped.amount == 10.0


def test_hold_when_rsi_is_not_oversold_or_signal_is_stale_or_book_is_bad() -> None:
    f = _bull_state()
    assert decide(f.engine.snapshot(), 35.0).reasons == ("absorption_bull", "rsi_not_oversold")
    assert decide(f.engine.snapshot(), float("nan")).action == "HOLD"
    f.tick(3 * S + 400_000 + 61 * S)
    assert decide(f.engine.snapshot(), 25.0).reasons == ("no_absorption",)
    g = _bull_state()
    g.uid += 3
    g.delta(3 * S + 500_000, bids=[(995.5, 1.0)])  # gap
    assert decide(g.engine.snapshot(), 25.0).reasons == ("book_unhealthy",)


def test_strong_sell_mirrored_and_disabled_for_spot() -> None:
    f = _bear_state()
    d = decide(f.engine.snapshot(), 75.0, f.engine.settings)
    assert (d.action, d.side, d.entry_price, d.wall_price, d.stop_price) == (
        "STRONG_SELL", "short", 1004.5, 1005.0, 1005.5)
    assert decide(f.engine.snapshot(), 65.0).action == "HOLD"
    g = _bear_state(decision=DecisionSettings(allow_short=False))
    assert decide(g.engine.snapshot(), 75.0, g.engine.settings).reasons == ("absorption_bear", "shorts_disabled")


def test_rsi_comes_from_talib_on_the_candle_closes() -> None:
    falling = np.linspace(1100.0, 1000.0, 30)
    assert rsi_last(falling) < 30 and rsi_last(falling[::-1]) > 70
    assert np.isnan(rsi_last(falling[:10]))
    f = _bull_state()
    assert decide_from_candles(f.engine.snapshot(), falling, f.engine.settings).action == "STRONG_BUY"


_BASE = _bull_state().engine.snapshot()


def _wall(side: str, price: float) -> Wall:
    return Wall(side, price, price, price + 1.0, price, 0, 0, 0, 10.0, 10.0, 1.0, 0.0)  # type: ignore[arg-type]


@given(st.floats(900, 1100), st.floats(0.01, 20), st.lists(st.floats(800, 1200), max_size=4),
       st.lists(st.floats(800, 1200), max_size=4), st.floats(0, 100), st.sampled_from(["bull", "bear"]),
       st.floats(0, 10), st.floats(10, 1e7))
def test_no_decision_has_its_stop_on_the_wrong_side_or_a_size_above_the_cap(
        bid: float, spread: float, bid_walls: list[float], ask_walls: list[float], rsi: float, direction: str,
        tick: float, stake: float) -> None:
    walls = tuple(_wall("bid", p) for p in bid_walls) + tuple(_wall("ask", p) for p in ask_walls)
    target = (bid_walls or ask_walls or [995.0])[0]
    sig = dataclasses.replace(_BASE.absorption, direction=direction, wall_price=target)  # type: ignore[type-var]
    state: PairState = dataclasses.replace(_BASE, best_bid=bid, best_ask=bid + spread, walls=walls, absorption=sig,
                                           tick_size=tick)
    d = decide(state, rsi)
    if d.action == "HOLD":
        assert d.entry_price is None and d.stop_price is None
        return
    assert d.entry_price is not None and d.stop_price is not None
    if d.side == "long":
        assert d.stop_price < d.entry_price and d.entry_price == bid
    else:
        assert d.stop_price > d.entry_price and d.entry_price == bid + spread
    size = d.size(10_000.0, stake)
    assert size.stake <= stake and size.amount * d.entry_price <= stake * (1 + 1e-12)
    assert 0.01 <= d.risk_fraction <= 0.02
