"""Absorption: taker volume into a holding wall reaching absorption_frac of its peak, both sides; the
window and the "holds" rule; and on the real stream, each signal's volume recomputed from the raw trades."""

from __future__ import annotations

import _btcusdt
from _scenario import BIDS, EX, SYM, T0, Feed, S, ask_wall_confirmed, bid_wall_confirmed, settings

from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import AbsorptionSettings, HeliosSettings, WallSettings
from helios_orderflow.engine.pair_engine import PairEngine


def test_bullish_absorption_at_a_refilled_bid_wall() -> None:
    f = bid_wall_confirmed()
    f.trade(3 * S + 200_000, 995.5, 3.0, "sell")  # 3 < 0.5 x peak 10 = 5
    assert f.engine.absorptions == 0
    f.delta(3 * S + 300_000, bids=[(995.5, 12.0)])  # refilled: the wall holds
    f.trade(3 * S + 400_000, 995.2, 2.5, "sell")  # inside the bin [995, 996): 3 + 2.5 = 5.5 >= 5
    st = f.engine.snapshot()
    sig = st.absorption
    assert st.absorptions == 1 and sig is not None
    assert (sig.direction, sig.wall_price, sig.wall_low, sig.wall_high) == ("bull", 995.0, 995.0, 996.0)
    assert (sig.ts_us, sig.absorbed_volume, sig.wall_peak_size) == (T0 + 3 * S + 400_000, 5.5, 10.0)
    f.trade(3 * S + 500_000, 995.5, 1.0, "sell")  # still above the threshold: fires once only
    assert f.engine.absorptions == 1
    f.tick(60 * S)  # close the candle
    assert f.engine.last_candle is not None
    assert (f.engine.last_candle.absorption_bull, f.engine.last_candle.absorption_bear) == (1, 0)


def test_bearish_absorption_at_an_ask_wall() -> None:
    f = ask_wall_confirmed()
    f.trade(3 * S + 200_000, 1004.5, 4.0, "buy")
    f.trade(3 * S + 300_000, 1004.0, 1.0, "buy")  # bin low edge is inside: 4 + 1 = 5 >= 5
    sig = f.engine.snapshot().absorption
    assert sig is not None
    assert (sig.direction, sig.wall_price, sig.absorbed_volume) == ("bear", 1005.0, 5.0)


def test_taker_buys_do_not_count_at_a_bid_wall() -> None:
    f = bid_wall_confirmed()
    f.trade(3 * S + 200_000, 995.5, 6.0, "buy")
    assert f.engine.absorptions == 0


def test_no_absorption_when_price_breaks_more_than_one_bin_through() -> None:
    f = bid_wall_confirmed()
    f.trade(3 * S + 200_000, 995.5, 4.0, "sell")
    f.trade(3 * S + 300_000, 993.9, 0.1, "sell")  # below low - bin = 994: the wall did not hold; count restarts
    f.trade(3 * S + 400_000, 995.5, 4.0, "sell")  # 4 < 5
    assert f.engine.absorptions == 0
    f.trade(3 * S + 500_000, 994.5, 0.1, "sell")  # within one bin beyond: tolerated, not counted
    f.trade(3 * S + 600_000, 995.5, 1.0, "sell")  # 4 + 1 = 5
    assert f.engine.absorptions == 1


def test_volume_outside_the_window_does_not_count() -> None:
    f = bid_wall_confirmed()
    f.trade(3 * S + 200_000, 995.5, 4.0, "sell")
    for s in range(4, 35):
        f.tick(s * S)  # the wall is rescanned and holds (size 10)
    f.trade(35 * S, 995.5, 4.0, "sell")  # the first 4 is 31.8 s old (window 30 s): 4 < 5
    assert f.engine.absorptions == 0
    assert f.engine.walls is not None and len(f.engine.snapshot().walls) == 1


def test_real_stream_absorption_volume_matches_the_raw_trades() -> None:
    s = HeliosSettings(walls=WallSettings(min_age_s=2.0), absorption=AbsorptionSettings(frac=0.05, window_s=30.0))
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, s)
    signals = []
    clock = -1
    trades: list[tuple[int, float, float, str]] = []  # (engine clock, price, amount, side)
    last = None
    for ev in _btcusdt.events():
        engine.on_event(ev)
        clock = max(clock, ev.ts_us)
        if type(ev) is Trade:
            trades.append((clock, ev.price, ev.amount, ev.side))
        if engine.last_absorption is not last:
            last = engine.last_absorption
            signals.append(last)
    assert len(signals) >= 2
    window = int(s.absorption.window_s * 1e6)
    for sig in signals:
        taker = "sell" if sig.direction == "bull" else "buy"
        into = [a for c, p, a, side in trades
                if sig.ts_us - window < c <= sig.ts_us and side == taker and sig.wall_low <= p < sig.wall_high]
        # the window may have restarted after a break-through, so it holds at most the raw sum
        assert sig.absorbed_volume <= sum(into) + 1e-9
        assert sig.absorbed_volume >= s.absorption.frac * sig.wall_peak_size - 1e-9


def test_a_deferred_wall_scan_is_done_before_the_next_trade_so_absorption_is_unchanged() -> None:
    """The live feed defers wall scans (``defer_timers``); a trade must still meet the walls of every scan
    already due, or volume traded into a just-confirmed wall would be missed."""
    states = []
    for defer in (False, True):
        f = Feed(engine=PairEngine(EX, SYM, settings(), defer_timers=defer))
        f.snapshot(0)
        f.delta(S // 2, bids=[(995.5, 10.0)])
        for s in (1, 2, 3):
            f.tick(s * S)
        f.delta(3 * S + 100_000, bids=[(p, 0.0) for p, _ in BIDS[:4]])
        assert f.engine.unsettled is defer  # quotes and diffs leave the 3 s scan waiting
        f.trade(3 * S + 200_000, 995.5, 3.0, "sell")
        f.delta(3 * S + 300_000, bids=[(995.5, 12.0)])
        f.trade(3 * S + 400_000, 995.2, 2.5, "sell")
        states.append(f.engine.snapshot())
    inline, deferred = states
    assert inline.absorptions == deferred.absorptions == 1
    assert deferred.absorption == inline.absorption and deferred.absorption.absorbed_volume == 5.5
