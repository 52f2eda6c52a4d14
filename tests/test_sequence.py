"""Sequence handling by Binance's documented rules: alignment, gaps, stale diffs."""

from __future__ import annotations

from helios_orderflow.book.sync import BookSync, DeltaResult
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot


def snap(u: int) -> BookSnapshot:
    return BookSnapshot("binance", "BTC/USDT", 0, 0, u, bids=((100.0, 1.0),), asks=((101.0, 1.0),))


def spot(first: int, last: int, bid: float = 100.0, amount: float = 2.0) -> BookDelta:
    return BookDelta("binance", "BTC/USDT", 0, 0, first, last, NO_ID, bids=((bid, amount),), asks=())


def fut(first: int, last: int, prev: int, amount: float = 2.0) -> BookDelta:
    return BookDelta("binanceusdm", "BTC/USDT:USDT", 0, 0, first, last, prev, bids=((100.0, amount),), asks=())


def test_diffs_before_snapshot_are_buffered_then_aligned_spot():
    sync = BookSync()
    assert sync.on_delta(spot(1, 5)) is DeltaResult.BUFFERED
    assert sync.on_delta(spot(6, 9, amount=3.0)) is DeltaResult.BUFFERED
    assert sync.on_delta(spot(10, 12, amount=4.0)) is DeltaResult.BUFFERED
    sync.on_snapshot(snap(7))  # drops u=5, applies 6..9 (straddles 8), then 10..12
    assert sync.in_sync and sync.gaps == 0
    assert sync.stale_dropped == 1
    assert sync.applied == 2
    assert sync.book.update_id == 12
    assert sync.book.best_bid() == (100.0, 4.0)


def test_spot_gap_is_counted_and_book_marked_out_of_sync():
    sync = BookSync()
    sync.on_snapshot(snap(10))
    assert sync.on_delta(spot(11, 12)) is DeltaResult.APPLIED
    assert sync.on_delta(spot(14, 15)) is DeltaResult.GAP
    assert sync.gaps == 1 and not sync.in_sync
    assert "U=14" in sync.last_gap and "previous u=12" in sync.last_gap
    # nothing is applied while out of sync
    assert sync.on_delta(spot(16, 17, amount=9.0)) is DeltaResult.BUFFERED
    assert sync.book.best_bid() == (100.0, 2.0)
    # the next snapshot re-aligns with the buffered diffs
    sync.on_snapshot(snap(15))
    assert sync.in_sync and sync.book.update_id == 17 and sync.book.best_bid() == (100.0, 9.0)


def test_snapshot_older_than_every_buffered_diff_is_a_gap():
    sync = BookSync()
    sync.on_delta(spot(20, 25))
    sync.on_snapshot(snap(10))  # the first diff must straddle 11
    assert sync.gaps == 1 and not sync.in_sync


def test_futures_rule_uses_pu_chain():
    sync = BookSync()
    sync.on_delta(fut(5, 9, 4))
    sync.on_delta(fut(10, 14, 9))
    sync.on_snapshot(snap(8))  # futures: first diff has U <= 8 <= u
    assert sync.in_sync and sync.book.update_id == 14
    # futures ids jump; pu links them
    assert sync.on_delta(fut(30, 40, 14)) is DeltaResult.APPLIED
    assert sync.on_delta(fut(50, 60, 45)) is DeltaResult.GAP
    assert sync.gaps == 1


def test_duplicate_diff_after_apply_is_stale_not_a_gap():
    sync = BookSync()
    sync.on_snapshot(snap(10))
    d = spot(11, 12)
    assert sync.on_delta(d) is DeltaResult.APPLIED
    assert sync.on_delta(d) is DeltaResult.STALE
    assert sync.gaps == 0 and sync.in_sync


def test_deltas_without_ids_apply_in_arrival_order():
    sync = BookSync()
    sync.on_snapshot(BookSnapshot("kraken", "BTC/USD", 0, 0, NO_ID, ((1.0, 1.0),), ((2.0, 1.0),)))
    d = BookDelta("kraken", "BTC/USD", 0, 0, NO_ID, NO_ID, NO_ID, bids=((1.5, 3.0),), asks=())
    assert sync.on_delta(d) is DeltaResult.APPLIED
    assert sync.book.best_bid() == (1.5, 3.0)


def test_on_applied_sees_every_state_including_buffered_replay():
    states = []
    sync = BookSync(on_applied=lambda: states.append(sync.book.update_id))
    sync.on_delta(spot(6, 9))
    sync.on_delta(spot(10, 12))
    sync.on_snapshot(snap(7))
    assert states == [7, 9, 12]


def test_futures_diff_ending_exactly_at_snapshot_id_is_applied_not_dropped():
    sync = BookSync()
    sync.on_delta(fut(5, 8, 4, amount=5.0))  # u == lastUpdateId: Binance futures applies it
    sync.on_delta(fut(9, 12, 8, amount=6.0))
    sync.on_snapshot(snap(8))
    assert sync.gaps == 0 and sync.stale_dropped == 0
    assert sync.book.update_id == 12 and sync.book.best_bid() == (100.0, 6.0)


def test_invalidate_marks_book_out_of_sync_until_next_snapshot_without_counting_a_gap():
    sync = BookSync()
    sync.on_snapshot(snap(10))
    sync.invalidate("feed reconnected")
    assert not sync.in_sync and sync.gaps == 0 and sync.last_gap == "feed reconnected"
    assert sync.on_delta(spot(11, 12)) is DeltaResult.BUFFERED
    sync.on_snapshot(snap(11))
    assert sync.in_sync and sync.book.update_id == 12


def test_buffer_is_bounded_and_overflow_is_counted():
    sync = BookSync(buffer_limit=3)
    for i in range(5):
        sync.on_delta(spot(i * 2 + 1, i * 2 + 2))
    assert sync.buffer_overflows == 2
    assert len(sync._buffer) == 3
