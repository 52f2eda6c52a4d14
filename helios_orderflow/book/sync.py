"""Sequence handling: apply snapshots and deltas to a book by the venue's documented rules.

Binance (https://developers.binance.com, "How to manage a local order book correctly"):

- Buffer diffs, fetch a REST snapshot with ``lastUpdateId`` = L.
- Spot: drop every buffered diff with ``u <= L``; futures: drop ``u < L``.
- Spot: the first diff applied must straddle L+1 (``U <= L+1 <= u``); each next one must have
  ``U == previous u + 1``.
- USD-M and COIN-M futures: the first diff applied must have ``U <= L <= u``; each next one must have
  ``pu == previous u``.

Which rule applies is read off the delta itself: a delta carrying ``prev_update_id`` (``pu``) follows the
futures rule, one with only ``U``/``u`` the spot rule, one with no ids (tardis, Kraken, OKX, whose
integrity is checked by checksums in their importers) is applied in arrival order.

A gap is never applied silently: it is counted, the book is marked out of sync, and diffs are buffered
again until the next snapshot re-aligns it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from helios_orderflow.book.order_book import OrderBook
from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot

if TYPE_CHECKING:  # (importing it would import numba into every user of the sync)
    from helios_orderflow.book.flow_book import FlowBook


class DeltaResult(Enum):
    APPLIED = "applied"
    BUFFERED = "buffered"  # waiting for a snapshot
    STALE = "stale"  # older than the book; dropped as Binance says
    GAP = "gap"  # sequence broken; book now out of sync


class BookSync:
    """One symbol's book kept in sync with a sequenced diff stream.

    Counters (all since construction): ``snapshots``, ``applied``, ``stale_dropped``, ``gaps``,
    ``buffer_overflows``. ``in_sync`` is False before the first snapshot and after a gap until a
    snapshot realigns the book; while it is False, ``book`` must not be trusted.
    """

    __slots__ = (
        "book",
        "in_sync",
        "snapshots",
        "applied",
        "stale_dropped",
        "gaps",
        "buffer_overflows",
        "last_gap",
        "_buffer",
        "_expect_first",
        "_snapshot_id",
        "_on_applied",
    )

    def __init__(self, buffer_limit: int = 2_000, on_applied: Callable[[], None] | None = None,
                 book: OrderBook | FlowBook | None = None) -> None:
        """``on_applied`` is called after every snapshot load and every applied delta (including deltas
        replayed from the buffer when a snapshot arrives), so observers see every book state. ``book``: the
        book to keep (a new ``OrderBook`` by default; the engine's ``FlowBook`` queues what it is given)."""
        self.book = book if book is not None else OrderBook()
        self.in_sync = False
        self.snapshots = 0
        self.applied = 0
        self.stale_dropped = 0
        self.gaps = 0
        self.buffer_overflows = 0
        self.last_gap: str = ""
        self._buffer: deque[BookDelta] = deque(maxlen=buffer_limit)
        self._expect_first = False  # next applied diff is the first after a snapshot
        self._snapshot_id = NO_ID
        self._on_applied = on_applied

    def on_snapshot(self, snap: BookSnapshot) -> None:
        self.snapshots += 1
        self.book.load_snapshot(snap.bids, snap.asks, snap.update_id)
        self._snapshot_id = snap.update_id
        self.in_sync = True
        self._expect_first = snap.update_id != NO_ID
        if self._on_applied is not None:
            self._on_applied()
        buffered = list(self._buffer)
        self._buffer.clear()
        for delta in buffered:
            if self.on_delta(delta) is DeltaResult.GAP:
                break

    def on_delta(self, delta: BookDelta) -> DeltaResult:
        if not self.in_sync:
            if len(self._buffer) == self._buffer.maxlen:
                self.buffer_overflows += 1
            self._buffer.append(delta)
            return DeltaResult.BUFFERED
        u = delta.update_id
        if u == NO_ID:
            self.book.apply_diff(delta.bids, delta.asks)
            self.applied += 1
            if self._on_applied is not None:
                self._on_applied()
            return DeltaResult.APPLIED
        book = self.book
        if self._expect_first:
            last = self._snapshot_id
            futures = delta.prev_update_id != NO_ID
            # Spot drops u <= L; futures drop only u < L, since the diff ending at L is the first applied
            # and the next one's pu points at it.
            if u < last or (u == last and not futures):
                self.stale_dropped += 1
                return DeltaResult.STALE
            if futures:
                ok = delta.first_update_id <= last <= u
            else:
                ok = delta.first_update_id <= last + 1 <= u
            if not ok:
                return self._gap(
                    delta, f"first diff U={delta.first_update_id} u={u} does not straddle snapshot {last}"
                )
            self._expect_first = False
        else:
            prev = book.update_id
            if u <= prev:
                self.stale_dropped += 1
                return DeltaResult.STALE
            if delta.prev_update_id != NO_ID:
                if delta.prev_update_id != prev:
                    return self._gap(delta, f"pu={delta.prev_update_id} but previous u={prev}")
            elif delta.first_update_id != prev + 1:
                return self._gap(delta, f"U={delta.first_update_id} but previous u={prev}")
        book.apply_diff(delta.bids, delta.asks)
        if u >= 0:
            book.update_id = u
        self.applied += 1
        if self._on_applied is not None:
            self._on_applied()
        return DeltaResult.APPLIED

    def invalidate(self, reason: str) -> None:
        """Mark the book untrustworthy until the next snapshot (e.g. the feed declared lost data that
        the ids cannot show). Not counted as a sequence gap."""
        if self.in_sync:
            self.in_sync = False
            self.last_gap = reason
            self._buffer.clear()

    def _gap(self, delta: BookDelta, why: str) -> DeltaResult:
        self.gaps += 1
        self.in_sync = False
        self.last_gap = f"{delta.exchange} {delta.symbol} at {delta.ts_us}: {why}"
        self._buffer.clear()
        self._buffer.append(delta)
        return DeltaResult.GAP
