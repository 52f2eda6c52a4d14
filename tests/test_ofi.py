"""OFI (Cont, Kukanov & Stoikov 2014) and multi-level OFI hand-computed on a short sequence; queue and depth
imbalance, weighted mid; TopLevels against the sorted book; and on the real stream."""

from __future__ import annotations

import random

import _btcusdt
from _scenario import T0, Feed, S
from hypothesis import given, settings
from hypothesis import strategies as st

from helios_orderflow.book.order_book import OrderBook
from helios_orderflow.core.events import BookDelta
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.signals.ofi import TopLevels, ofi_levels, ofi_term, queue_imbalance, weighted_mid

BIDS0 = ((100.0, 5.0), (99.0, 3.0))
ASKS0 = ((101.0, 4.0), (102.0, 6.0))


def test_ofi_and_multi_level_ofi_hand_computed() -> None:
    f = Feed()  # ofi_levels = 2
    f.snapshot(0, BIDS0, ASKS0)
    # 1: best bid queue 5 -> 7, same price: e1 = 7 - 5 = 2; level 2 unchanged: 0.       multi 2
    f.delta(100_000, bids=[(100.0, 7.0)])
    assert (f.engine.ofi_last, f.engine.ofi_total, f.engine.ofi_multi_total) == (2.0, 2.0, 2.0)
    # 2: new best bid 100.5 x 1 (price up): e1 = +1; level 2 bid (99, 3) -> (100, 7), price up: +7.   multi 8
    f.delta(200_000, bids=[(100.5, 1.0)])
    assert (f.engine.ofi_last, f.engine.ofi_total, f.engine.ofi_multi_total) == (1.0, 3.0, 10.0)
    # 3: best ask 101 removed, best ask now (102, 6), price up: e1 = +old qa 4; level 2 ask (102, 6) -> none
    #    (+inf, 0): +6.                                                                   multi 10
    f.delta(300_000, asks=[(101.0, 0.0)])
    assert (f.engine.ofi_last, f.engine.ofi_total, f.engine.ofi_multi_total) == (4.0, 7.0, 20.0)
    # 4: new best ask 101.5 x 2 (price down): e1 = -2; level 2 ask none -> (102, 6), price down: -6.  multi -8
    f.delta(400_000, asks=[(101.5, 2.0)])
    assert (f.engine.ofi_last, f.engine.ofi_total, f.engine.ofi_multi_total) == (-2.0, 5.0, 12.0)
    st_ = f.engine.snapshot()
    assert (st_.ofi_candle, st_.ofi_multi_candle) == (5.0, 12.0)
    # best bid (100.5, 1), best ask (101.5, 2): queue imbalance (1 - 2) / 3, weighted mid 1/3 x 101.5 + 2/3 x 100.5
    assert abs(st_.queue_imbalance - (-1 / 3)) < 1e-12
    assert abs(st_.weighted_mid - (101.5 / 3 + 2 * 100.5 / 3)) < 1e-12
    # depth imbalance within +/- 60 bps of mid 101.0 = [100.394, 101.606]: bids 1.0, asks 2.0 -> -1/3 (next scan)
    f.tick(1 * S)
    assert abs(f.engine.snapshot().depth_imbalance - (-1 / 3)) < 1e-12
    f.tick(60 * S)
    c = f.engine.last_candle
    assert c is not None and (c.ofi, c.ofi_multi) == (5.0, 12.0) and c.open_time_us == T0


def test_ofi_term_matches_the_paper_cases() -> None:
    # bid price up: +new bid size; bid price down: -old bid size; ask price down: -new ask size; up: +old ask
    assert ofi_term(100, 5, 101, 4, 100.5, 2, 101, 4) == 2.0
    assert ofi_term(100, 5, 101, 4, 99.5, 2, 101, 4) == -5.0
    assert ofi_term(100, 5, 101, 4, 100, 5, 100.5, 3) == -3.0
    assert ofi_term(100, 5, 101, 4, 100, 5, 101.5, 3) == 4.0
    assert ofi_levels([(100, 5)], [(101, 4)], [(100, 5)], [(101, 4)], 3) == (0.0, 0.0)


def test_imbalance_helpers() -> None:
    assert queue_imbalance(3.0, 1.0) == 0.5
    assert weighted_mid(100.0, 3.0, 101.0, 1.0) == 100.75  # leans to the ask: the small ask queue goes first
    assert weighted_mid(100.0, 0.0, 101.0, 0.0) == 100.5


def test_no_ofi_across_a_snapshot_or_while_out_of_sync() -> None:
    f = Feed()
    f.snapshot(0, BIDS0, ASKS0)
    f.delta(100_000, bids=[(100.0, 7.0)])
    f.uid += 3  # gap: out of sync, nothing counted
    f.delta(200_000, bids=[(100.0, 20.0)])
    assert f.engine.ofi_total == 2.0 and f.engine.snapshot().queue_imbalance != f.engine.snapshot().queue_imbalance
    f.snapshot(300_000, ((100.0, 50.0),), ASKS0, uid=f.uid)  # a resync is not order flow
    assert f.engine.snapshot().health.book_ok
    assert f.engine.ofi_total == 2.0
    f.delta(400_000, bids=[(100.0, 51.0)])
    assert f.engine.ofi_total == 3.0


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3), st.booleans()), min_size=1, max_size=300),
       st.integers(1, 6))
def test_top_levels_always_equal_the_sorted_book(changes: list[tuple[int, int, bool]], need: int) -> None:
    book = OrderBook()
    book.load_snapshot([(100.0 - i, 1.0) for i in range(20)], [(101.0 + i, 1.0) for i in range(20)])
    bids = TopLevels(book.bids, need, capacity=8)
    asks = TopLevels(book.asks, need, capacity=8)
    bids.rebuild()
    asks.rebuild()
    for tick, size, is_bid in changes:
        change = ((100.0 - tick if is_bid else 101.0 + tick - 20, float(size)),)
        if is_bid:
            book.bids.apply(change)
            bids.apply(change)
        else:
            book.asks.apply(change)
            asks.apply(change)
        assert bids.top(need) == book.bids.top(need)
        assert asks.top(need) == book.asks.top(need)


def test_real_stream_ofi_equals_a_recomputation_from_the_sorted_book() -> None:
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL)
    n = engine.settings.flow.ofi_levels
    prev = None
    want_best = want_multi = 0.0
    rng = random.Random(7)
    checked = 0
    for ev in _btcusdt.events():
        before = engine.sync.applied
        engine.on_event(ev)
        if type(ev) is BookDelta and engine.sync.applied > before:
            bids, asks = engine.book.top(n)
            if prev is not None:
                e1, em = ofi_levels(prev[0], prev[1], bids, asks, n)
                want_best += e1
                want_multi += em
            prev = (bids, asks)
            if rng.random() < 0.05:
                checked += 1
                assert engine.snapshot().best_bid == bids[0][0]
    assert checked > 100
    assert abs(engine.ofi_total - want_best) < 1e-6 and abs(engine.ofi_multi_total - want_multi) < 1e-6
    assert engine.crossed == 0 and engine.snapshot().health.gaps == 0
