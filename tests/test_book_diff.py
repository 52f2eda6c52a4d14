"""BookDiffer: conflated ccxt book observations become exact level changes (real ccxt OrderBook objects)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from ccxt.async_support.base.ws.order_book import OrderBook as CcxtOrderBook

from helios_orderflow.book.diff import BookDiffer, apply_levels, diff_levels, levels_of
from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot
from helios_orderflow.devtools.benchmarks.book import aligned_stream


def _ccxt_book(snapshot: BookSnapshot, depth: int) -> CcxtOrderBook:
    ob = CcxtOrderBook({}, depth)
    ob.reset({"bids": [list(x) for x in snapshot.bids], "asks": [list(x) for x in snapshot.asks],
              "nonce": snapshot.update_id, "timestamp": None})
    return ob


def _apply_like_ccxt(ob: CcxtOrderBook, delta: BookDelta) -> None:
    """What ccxt's binance handle_order_book_message does with one diff, then the limit() it returns."""
    for p, q in delta.asks:
        ob["asks"].store(p, q)
    for p, q in delta.bids:
        ob["bids"].store(p, q)
    ob["nonce"] = delta.update_id
    ob["timestamp"] = delta.ts_us // 1000
    ob.limit()


def _top(ob: CcxtOrderBook, depth: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return [tuple(x) for x in ob["bids"][:depth]], [tuple(x) for x in ob["asks"][:depth]]


@pytest.fixture(scope="module")
def btcusdt_stream() -> tuple[BookSnapshot, list[BookDelta]]:
    return aligned_stream()


@pytest.mark.parametrize("depth", [1000, 20])
def test_conflated_observations_of_real_btcusdt_book_rebuild_ccxt_top_levels_exactly(btcusdt_stream, depth):
    snapshot, deltas = btcusdt_stream
    ob = _ccxt_book(snapshot, depth)
    differ = BookDiffer("binance", "BTC/USDT", depth)
    sync = BookSync()
    rng = random.Random(5)
    observations = compared = 0
    local = 1_723_161_254_000_000
    first = differ.observe(ob, local)
    assert isinstance(first, BookSnapshot) and first.update_id == snapshot.update_id
    assert len(first.bids) == min(depth, len(snapshot.bids))
    sync.on_snapshot(first)
    skip = 0
    for i, d in enumerate(deltas):
        _apply_like_ccxt(ob, d)
        if skip:  # conflation: the consumer was busy, ccxt applied this diff unseen
            skip -= 1
            continue
        skip = rng.choice([0, 0, 1, 2, 6])
        local += 1000
        ev = differ.observe(ob, local)
        observations += 1
        if ev is not None:
            assert isinstance(ev, BookDelta)
            assert ev.update_id == d.update_id and ev.ts_us == d.ts_us
            sync.on_delta(ev)
        if i % 7 == 0 or i == len(deltas) - 1:
            bids, asks = _top(ob, depth)
            assert sync.book.bids.top(depth) == bids
            assert sync.book.asks.top(depth) == asks
            compared += 1
    # Every observation chained onto the previous one by update id: BookSync saw no gap, dropped nothing.
    assert sync.gaps == 0 and sync.stale_dropped == 0 and sync.in_sync
    assert observations > 2000 and compared > 300
    assert differ.snapshots == 1 and differ.deltas + differ.unchanged == observations
    bids, asks = _top(ob, depth)
    if depth == 1000:
        assert bids[0][0] == 61602.01 and asks[0][0] == 61602.02  # the stream's checked final best prices


def test_a_level_pushed_out_of_the_compared_depth_is_reported_removed_and_back_when_it_returns():
    differ = BookDiffer("binance", "X/USDT", depth=2)
    ob = CcxtOrderBook({}, 1000)
    ob.reset({"bids": [[10.0, 1.0], [9.0, 2.0], [8.0, 3.0]], "asks": [[11.0, 1.0]], "nonce": 5, "timestamp": 7})
    snap = differ.observe(ob, 100)
    assert isinstance(snap, BookSnapshot)
    assert snap.bids == ((10.0, 1.0), (9.0, 2.0)) and snap.ts_us == 7000 and snap.update_id == 5
    ob["bids"].store(10.5, 4.0)  # better bid: 9.0 leaves the top 2
    ob["nonce"] = 6
    d = differ.observe(ob, 200)
    assert d.bids == ((10.5, 4.0), (9.0, 0.0)) and d.asks == ()
    assert (d.first_update_id, d.update_id, d.prev_update_id) == (6, 6, NO_ID)
    ob["bids"].store(10.5, 0.0)  # gone again: 9.0 is back in the top 2
    ob["nonce"] = 9
    d = differ.observe(ob, 300)
    assert d.bids == ((9.0, 2.0), (10.5, 0.0))
    assert (d.first_update_id, d.update_id) == (7, 9)


def test_no_level_change_gives_no_event_and_no_nonce_gives_unsequenced_deltas_at_local_time():
    differ = BookDiffer("kraken", "BTC/USD", depth=10)
    ob = CcxtOrderBook({}, 10)
    ob.reset({"bids": [[100.0, 1.0]], "asks": [[101.0, 2.0]], "nonce": None, "timestamp": None})
    snap = differ.observe(ob, 123)
    assert snap.update_id == NO_ID and snap.ts_us == 123 and snap.local_ts_us == 123
    assert differ.observe(ob, 124) is None and differ.unchanged == 1
    ob["asks"].store(101.0, 3.5)
    d = differ.observe(ob, 125)
    assert d.asks == ((101.0, 3.5),) and d.bids == ()
    assert (d.first_update_id, d.update_id, d.prev_update_id) == (NO_ID, NO_ID, NO_ID) and d.ts_us == 125


def test_a_tracked_ccxt_book_that_ccxt_drops_is_freed_at_once_without_the_garbage_collector():
    # A Freqtrade process runs no full collection (its gc thresholds): a book kept alive by a reference cycle
    # would wait there with all its levels (the soak's bot: +1.4 MB a minute). Reference counting alone must
    # free the book, and the tracking must still see every change.
    import gc
    import weakref

    differ = BookDiffer("binance", "X/USDT", depth=10)
    ob = CcxtOrderBook({}, 10)
    ob.reset({"bids": [[10.0, 1.0], [9.0, 2.0]], "asks": [[11.0, 1.0]], "nonce": 1, "timestamp": 1})
    differ.observe(ob, 1)
    ob["bids"].store(9.5, 3.0)
    ob["asks"].store(11.0, 0.0)
    ob["nonce"] = 2
    d = differ.observe(ob, 2)
    assert d.bids == ((9.5, 3.0),) and d.asks == ((11.0, 0.0),)
    assert getattr(ob["bids"], "_helios_tracker", None) is not None  # tracked (the incremental path)
    sides = weakref.ref(ob["bids"]), weakref.ref(ob["asks"])
    gc.disable()
    try:
        del ob, d
        # a resync: ccxt starts a new book, and the differ's next observation lets go of the old one's sides
        differ.reset()
        fresh = CcxtOrderBook({}, 10)
        fresh.reset({"bids": [[10.0, 1.0]], "asks": [[11.0, 1.0]], "nonce": 5, "timestamp": 5})
        assert isinstance(differ.observe(fresh, 5), BookSnapshot)
        assert sides[0]() is None and sides[1]() is None
    finally:
        gc.enable()


def test_reset_makes_the_next_observation_a_snapshot_and_crossed_books_are_seen():
    differ = BookDiffer("binance", "X/USDT", depth=5)
    ob = CcxtOrderBook({}, 5)
    ob.reset({"bids": [[10.0, 1.0]], "asks": [[11.0, 1.0]], "nonce": 1, "timestamp": 1})
    differ.observe(ob, 1)
    assert not differ.is_crossed()
    ob["bids"].store(11.5, 1.0)
    ob["nonce"] = 2
    differ.observe(ob, 2)
    assert differ.is_crossed() and differ.best_bid() == 11.5 and differ.best_ask() == 11.0
    differ.reset()
    assert not differ.has_book
    snap = differ.observe(ob, 3)
    assert isinstance(snap, BookSnapshot) and snap.bids == ((11.5, 1.0), (10.0, 1.0))
    assert differ.snapshots == 2


def test_diff_levels_replays_to_the_new_side_on_random_books():
    rng = random.Random(11)
    for _ in range(300):
        prev = {float(rng.randrange(50)): float(rng.randrange(1, 4)) for _ in range(rng.randrange(0, 30))}
        cur = {float(rng.randrange(50)): float(rng.randrange(1, 4)) for _ in range(rng.randrange(0, 30))}
        changes = diff_levels(prev, cur)
        side = dict(prev)
        apply_levels(side, changes)
        assert side == cur
        # only real changes: each price at most once, and unchanged levels never listed
        prices = [p for p, _ in changes]
        assert len(prices) == len(set(prices))
        assert all(prev.get(p) != q or (q == 0.0 and p in prev and p not in cur) for p, q in changes)


def test_levels_of_reads_counted_sides_and_drops_their_zero_sizes():
    assert levels_of([[1.0, 2.0, 3], [0.5, 0.0, 1], [0.4, 1.0, 2]], 10) == {1.0: 2.0, 0.4: 1.0}  # counted side
    assert levels_of([[1.0, 2.0], [0.5, 1.0]], 1) == {1.0: 2.0}


def _plain(book: Any) -> dict[str, Any]:
    """The same book as plain lists: BookDiffer then compares whole sides."""
    return {"bids": [list(r) for r in book["bids"]], "asks": [list(r) for r in book["asks"]],
            "nonce": book["nonce"], "timestamp": book["timestamp"]}


def test_tracking_ccxt_sides_gives_the_same_events_as_comparing_whole_books():
    from ccxt.async_support.base.ws.order_book import OrderBook

    rng = random.Random(5)
    for trial in range(60):
        depth = rng.choice([1, 3, 8, 20])
        book = OrderBook({}, rng.choice([depth, depth + 5, 1000]))  # ccxt's own limit() trims at its depth
        tracked, whole = BookDiffer("binance", "X/USDT", depth), BookDiffer("binance", "X/USDT", depth)
        rebuilt: dict[str, dict[float, float]] = {"bids": {}, "asks": {}}
        nonce = 0
        for step in range(150):
            action = rng.random()
            if action < 0.03:  # a resync refills the sides in place
                book.reset({"bids": [[100.0 - i, 1.0] for i in range(rng.randrange(0, 6))],
                            "asks": [[101.0 + i, 1.0] for i in range(rng.randrange(0, 6))], "nonce": nonce})
            elif action < 0.06:
                tracked.reset()
                whole.reset()
            else:
                for _ in range(rng.randrange(1, 6)):
                    bid = rng.random() < 0.5
                    price = float(rng.randrange(70, 101) if bid else rng.randrange(101, 132))
                    (book["bids"] if bid else book["asks"]).store(price, rng.choice([0.0, 1.0, 2.0, 3.5]))
                if rng.random() < 0.3:
                    book.limit()
            nonce += 1
            book["nonce"] = nonce
            a = tracked.observe(book, step)
            b = whole.observe(_plain(book), step)
            assert a == b, f"trial {trial} step {step}"
            assert (tracked.best_bid(), tracked.best_ask()) == (whole.best_bid(), whole.best_ask())
            if isinstance(a, BookSnapshot):
                rebuilt = {"bids": dict(a.bids), "asks": dict(a.asks)}
            elif a is not None:
                apply_levels(rebuilt["bids"], a.bids)
                apply_levels(rebuilt["asks"], a.asks)
            assert rebuilt["bids"] == {p: q for p, q in book["bids"][:depth]}
            assert rebuilt["asks"] == {p: q for p, q in book["asks"][:depth]}
    assert tracked.deltas > 0


def test_contract_amounts_become_base_amounts_as_the_venues_decimals_read_and_inverse_contracts_stay():
    from helios_orderflow.book.diff import base_amount, to_base
    from helios_orderflow.live.ccxt_edge import amount_scale

    assert 3.0 * 0.1 != 0.3 and 9.0 * 0.001 != 0.009  # the product alone is off by an ulp
    assert base_amount(3.0, 0.1) == 0.3 and base_amount(9.0, 0.001) == 0.009 and base_amount(7.0, 0.01) == 0.07
    assert to_base(((100.5, 3.0),), 0.1) == ((100.5, 0.3),)
    levels = ((1.0, 2.0),)
    assert to_base(levels, 1.0) is levels
    okx_swap = {"contract": True, "linear": True, "contractSize": 0.01}
    assert amount_scale(okx_swap) == 0.01
    assert amount_scale({"contract": True, "linear": True, "contractSize": 1.0}) == 1.0  # Bybit, Binance USD-M
    assert amount_scale({"contract": True, "linear": False, "inverse": True, "contractSize": 100.0}) == 1.0
    assert amount_scale({"contract": False, "spot": True, "contractSize": None}) == 1.0
