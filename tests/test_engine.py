"""PairEngine: deterministic, fails closed on a bad book, immutable snapshots, bounded in time jumps."""

from __future__ import annotations

import dataclasses
import math
import time

import _btcusdt
import pytest
from _scenario import EX, SYM, T0, Feed, S

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import FeedGap, Trade
from helios_orderflow.engine.pair_engine import PairEngine, PairState


def _comparable(st: PairState) -> dict:
    d = {f.name: getattr(st, f.name) for f in dataclasses.fields(st) if f.name != "heatmap"}
    hm = st.heatmap
    d["heatmap"] = None if hm is None else (hm.seq, hm.ts_us.tolist(), hm.bids.tolist(), hm.sell.tolist())
    return d


def test_replaying_the_same_events_gives_the_same_state_bit_for_bit() -> None:
    runs = []
    for _ in range(2):
        rows = []
        e = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, on_candle=rows.append)
        for ev in _btcusdt.events():
            e.on_event(ev)
        runs.append((rows, _comparable(e.snapshot())))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) == 11
    a, b = runs[0][1], runs[1][1]
    assert a.keys() == b.keys()
    for k in a:
        assert repr(a[k]) == repr(b[k]), k  # repr: NaN == NaN


def test_snapshot_is_immutable_and_carries_the_book_top() -> None:
    f = Feed()
    f.snapshot(0)
    st = f.engine.snapshot()
    assert (st.best_bid, st.best_bid_size, st.best_ask, st.best_ask_size, st.mid, st.spread) == (
        999.5, 1.0, 1000.5, 1.0, 1000.0, 1.0)
    assert st.health.book_ok and st.health.snapshots == 1 and st.ts_us == T0
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.mid = 5.0  # type: ignore[misc]


def test_a_sequence_gap_fails_closed_until_the_next_snapshot() -> None:
    f = Feed()
    f.snapshot(0)
    f.delta(100_000, bids=[(999.5, 2.0)])
    f.uid += 1
    f.delta(200_000, bids=[(999.5, 3.0)])  # U skips one id
    st = f.engine.snapshot()
    assert not st.health.in_sync and not st.health.book_ok and st.health.gaps == 1
    assert st.best_bid is None and st.mid is None and math.isnan(st.queue_imbalance) and st.walls == ()
    f.snapshot(300_000, uid=f.uid)  # realigns (the buffered diff is not newer than the snapshot)
    st = f.engine.snapshot()
    assert st.health.book_ok and st.best_bid == 999.5 and st.health.stale_dropped == 1


def test_a_declared_feed_gap_fails_closed() -> None:
    f = Feed()
    f.snapshot(0)
    f.send(FeedGap(EX, SYM, T0 + 1000, T0 + 1000, "reconnect"))
    st = f.engine.snapshot()
    assert st.health.feed_gaps == 1 and not st.health.in_sync and st.best_bid is None
    f.delta(2000, bids=[(999.5, 2.0)])  # buffered, not applied
    assert f.engine.snapshot().best_bid is None


def test_a_crossed_book_gives_no_book_values_and_is_counted() -> None:
    f = Feed()
    f.snapshot(0)
    f.delta(100_000, bids=[(1001.0, 1.0)])  # bid above the best ask
    st = f.engine.snapshot()
    assert st.health.crossed == 1 and not st.health.book_ok and st.mid is None
    f.delta(200_000, bids=[(1001.0, 0.0)])
    assert f.engine.snapshot().mid == 1000.0


def test_events_of_another_symbol_are_refused() -> None:
    e = PairEngine(EX, SYM)
    with pytest.raises(HeliosError, match="route events by symbol"):
        e.on_event(Trade(EX, "ETH/USDT", T0, T0, 1.0, 1.0, "buy", "1"))


def test_a_three_day_silence_closes_every_candle_and_keeps_the_heatmap_bounded() -> None:
    f = Feed()
    f.snapshot(0)
    f.trade(1000, 1000.5, 1.0, "buy")
    f.trade(3 * 86400 * S + 5, 1000.5, 1.0, "buy")
    e = f.engine
    assert e.candles_closed == 3 * 1440
    # only the columns the 4-column ring keeps are computed, not 518400 of them
    assert e.heatmap is not None and e.heatmap.seq == 4
    assert len(e.history) == e.settings.flow.candle_history and e.history[-1].volume == 0.0


def test_time_is_event_time_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The engine never reads a clock: with every clock of the time module made to fail, the same events give
    # the same candles, whenever they are replayed.
    def run() -> list:
        f = Feed()
        f.snapshot(0)
        for k in range(1, 200):
            f.trade(k * 700_000, 1000.5 if k % 2 else 999.5, 0.1 * k, "buy" if k % 3 else "sell")
        return list(f.engine.history)

    first = run()

    def no_clock(*_: object) -> float:
        raise AssertionError("the engine read the wall clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"):
        monkeypatch.setattr(time, name, no_clock)
    again = run()
    monkeypatch.undo()
    assert len(first) >= 2 and again == first


def test_deferred_timers_give_the_same_candles_heatmap_and_walls_as_inline_ones() -> None:
    """The live feed defers heatmap columns and wall scans to ``settle()`` (called when it is idle). On two
    days of real Binance BTCUSDT, settling at random moments gives exactly the inline engine's results."""
    import random

    rng = random.Random(7)
    rows_inline: list = []
    rows_deferred: list = []
    inline = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, on_candle=rows_inline.append)
    deferred = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, on_candle=rows_deferred.append, defer_timers=True)
    waited = lagging = 0
    for ev in _btcusdt.events():
        inline.on_event(ev)
        deferred.on_event(ev)
        if deferred.unsettled:
            waited += 1
            shown = deferred.snapshot().heatmap
            if inline.heatmap is not None and (shown.seq if shown else 0) < inline.heatmap.seq:
                lagging += 1  # until settled, a snapshot shows the state from just before the timer
            if rng.random() < 0.3:
                deferred.settle()
    deferred.settle()
    assert waited > 1000 and lagging > 100  # deferral really happened, often across several events
    assert rows_deferred == rows_inline and len(rows_inline) == 11
    a, b = _comparable(inline.snapshot()), _comparable(deferred.snapshot())
    for k in a:
        assert repr(a[k]) == repr(b[k]), k
    wa, wb = inline.heatmap.window(), deferred.heatmap.window()
    assert wa.seq == wb.seq > 1000
    for name in ("ts_us", "anchor_bin", "bids", "asks", "buy", "sell"):
        assert getattr(wa, name).tobytes() == getattr(wb, name).tobytes(), name
    assert inline.absorptions == deferred.absorptions and inline.exhaustions == deferred.exhaustions
