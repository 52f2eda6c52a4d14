"""The L2 book: level changes, best prices, crossed detection, sorted and ranged access."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from helios_orderflow.book.order_book import OrderBook


def make_book() -> OrderBook:
    book = OrderBook()
    book.load_snapshot(bids=[(100.0, 1.0), (99.5, 2.0), (99.0, 3.0)], asks=[(100.5, 1.5), (101.0, 2.5)], update_id=7)
    return book


def test_snapshot_sets_best_prices_and_update_id():
    book = make_book()
    assert book.best_bid() == (100.0, 1.0)
    assert book.best_ask() == (100.5, 1.5)
    assert book.mid() == 100.25
    assert book.spread() == 0.5
    assert book.update_id == 7


def test_zero_amount_removes_level_and_best_moves_to_next():
    book = make_book()
    book.apply(bids=[(100.0, 0.0)], asks=[], update_id=8)
    assert book.best_bid() == (99.5, 2.0)
    assert book.update_id == 8
    assert 100.0 not in book.bids.levels


def test_absolute_size_replaces_not_adds():
    book = make_book()
    book.apply(bids=[(99.5, 0.25)], asks=[])
    assert book.bids.amount_at(99.5) == 0.25


def test_removing_unknown_level_is_a_no_op():
    book = make_book()
    book.apply(bids=[(50.0, 0.0)], asks=[(500.0, 0.0)])
    assert len(book.bids) == 3 and len(book.asks) == 2


def test_new_better_price_becomes_best():
    book = make_book()
    book.apply(bids=[(100.25, 4.0)], asks=[(100.4, 0.1)])
    assert book.best_bid() == (100.25, 4.0)
    assert book.best_ask() == (100.4, 0.1)


def test_crossed_book_is_detected():
    book = make_book()
    assert not book.is_crossed()
    book.apply(bids=[(100.5, 1.0)], asks=[])
    assert book.is_crossed()


def test_top_n_is_best_first_on_both_sides():
    book = make_book()
    bids, asks = book.top(2)
    assert bids == [(100.0, 1.0), (99.5, 2.0)]
    assert asks == [(100.5, 1.5), (101.0, 2.5)]
    bids, asks = book.top(10)
    assert [p for p, _ in bids] == [100.0, 99.5, 99.0]


def test_between_returns_every_level_in_range_ascending():
    book = make_book()
    bids, asks = book.between(99.25, 100.75)
    assert bids == [(99.5, 2.0), (100.0, 1.0)]
    assert asks == [(100.5, 1.5)]


def test_empty_book_has_no_best_and_is_not_crossed():
    book = OrderBook()
    assert book.best_bid() is None and book.best_ask() is None
    assert book.mid() is None and not book.is_crossed()


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 60), st.sampled_from([0.0, 0.0, 1.0, 2.5, 7.0])),
        min_size=1,
        max_size=400,
    )
)
def test_book_matches_a_plain_dict_model_after_any_change_sequence(changes):
    book = OrderBook()
    model: dict[bool, dict[float, float]] = {True: {}, False: {}}
    for is_bid, tick, amount in changes:
        price = tick * 0.5
        side = book.bids if is_bid else book.asks
        side.set(price, amount)
        if amount:
            model[is_bid][price] = amount
        else:
            model[is_bid].pop(price, None)
        # best price is checked after every change, since it is maintained incrementally
        expect_bid = max(model[True]) if model[True] else None
        expect_ask = min(model[False]) if model[False] else None
        assert book.bids.best_price() == expect_bid
        assert book.asks.best_price() == expect_ask
    assert book.bids.top() == sorted(model[True].items(), reverse=True)
    assert book.asks.top() == sorted(model[False].items())


def test_heap_compaction_keeps_book_correct_under_heavy_churn():
    rng = random.Random(3)
    book = OrderBook()
    live: dict[float, float] = {}
    for _ in range(20_000):
        price = float(rng.randint(1, 5000))
        if price in live and rng.random() < 0.7:
            book.bids.set(price, 0.0)
            del live[price]
        else:
            book.bids.set(price, 1.0)
            live[price] = 1.0
    # Memory stays proportional to the live levels: removed prices are dropped from the lazy structures.
    assert len(book.bids._pending) <= len(live) + 1024 + 1
    assert len(book.bids._heap) + len(book.bids._pending) <= 3 * len(live) + 2048 + 1
    assert book.bids.best_price() == max(live)
    assert [p for p, _ in book.bids.top(5)] == sorted(live, reverse=True)[:5]
