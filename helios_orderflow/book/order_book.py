"""The L2 order book: price levels per side, best prices at any moment, sorted access on demand.

Why this shape: on Binance's diff stream about 80% of level changes insert or delete a price (the
100 ms stream touches far levels constantly), so a book that keeps a sorted array up to date on every
change (as ccxt's ``OrderBookSide`` does, with a bisect and two list inserts or deletes) pays for
order it rarely reads. Here each side is a dict ``price -> amount`` (O(1) per change), a min-heap of
prices with lazy deletion gives the best price in amortized O(log n), and a sorted price list is
rebuilt only when someone asks for sorted levels after the set of prices changed.

A side can also be *tracked* (``BookSide.track``, the engine's choice): then, instead of the heap, it keeps a
short sorted list of its best prices up to date in the same loop that applies a message (the engine reads the
best levels after every message, for OFI): one loop over a message's changes instead of two (the book's and
a separate top-of-book structure's), and a new size at a known price, most changes, touches only the dict. It
also keeps the messages applied since its NumPy arrays were last read, so a deep book's next read converts only
the prices that changed (``arrays``; docs/research.md, "Faster engine").
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable

from helios_orderflow.book.arrays import SideArrays, merge_changes, sorted_arrays, worth_merging
from helios_orderflow.core.events import Level

_INF = math.inf


class BookSide:
    """One side of a book. ``is_bid`` decides which price is best (highest bid, lowest ask).

    Invariants: ``levels`` holds every price with a non-zero amount. ``_best`` is either None (unknown)
    or the best price in ``levels``. Every price in ``levels`` is in ``_heap`` or in ``_pending``; both
    may also hold prices since removed, which are skipped when met. New prices wait in ``_pending``
    (a plain append) and enter the heap only when the best must be found again after the best level
    went away; by then most far-from-the-touch prices the 100 ms stream adds are gone again, and the
    membership check on flush is cheaper than the heap push it saves.
    """

    __slots__ = ("levels", "is_bid", "_sign", "_heap", "_pending", "_best", "_sorted",
                 "_keys", "_limit", "_need", "_cap", "_log", "_logged", "_arrays")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[float, float] = {}
        self._sign = -1.0 if is_bid else 1.0
        self._heap: list[float] = []  # sign * price, a min-heap
        self._pending: list[float] = []
        self._best: float | None = None
        # Ascending prices, or None when the set of prices may have changed since it was built.
        self._sorted: list[float] | None = []
        # Tracked sides only (``track``); ``_keys`` None = not tracked.
        self._keys: list[float] | None = None
        self._limit = _INF
        self._need = 1
        self._cap = 64
        self._log: list[Iterable[Level]] = []  # messages applied since ``_arrays`` was read
        self._logged = 0  # level changes in ``_log``
        self._arrays: SideArrays | None = None

    def __len__(self) -> int:
        return len(self.levels)

    def __getstate__(self) -> tuple[None, dict[str, object]]:
        """Pickled (engine checkpoints) without the arrays and the messages since their last read: they are a
        cache, and the next read converts the side again to the same arrays."""
        state = {name: getattr(self, name) for name in self.__slots__}
        state.update(_log=[], _logged=0, _arrays=None)
        return None, state

    def track(self, need: int, capacity: int = 64) -> None:
        """Keep the best ``need`` levels exact after every change (``best_levels``), in place of the heap.

        Invariant while tracked: ``_keys`` holds, sorted, the key of *every* level whose key is <= ``_limit``
        (key = price for asks, -price for bids, so the best level comes first); a change inside that range
        inserts or deletes its key (a bisect on a short list, only when a price appears or goes: a new size
        at a known price touches nothing); a change beyond it is ignored. When deletions leave fewer than
        ``need`` keys the range is rebuilt from the side (``heapq.nsmallest``: O(n), rare); when insertions
        let it grow past ``4 * capacity`` it is trimmed (``_limit`` moves in)."""
        self._need = max(1, need)
        self._cap = max(capacity, 4 * self._need)
        self._keys = []
        self._rebuild_keys()
        self._heap = []
        self._pending = []
        self._best = None
        self._forget_arrays()

    def _forget_arrays(self) -> None:
        self._log = []
        self._logged = 0
        self._arrays = None

    @property
    def tracked(self) -> bool:
        return self._keys is not None

    def _rebuild_keys(self) -> None:
        levels = self.levels
        keys = heapq.nsmallest(self._cap, [-p for p in levels] if self.is_bid else levels)
        self._keys = keys
        # With fewer levels than the capacity every level is held: any new one belongs in the range.
        self._limit = keys[-1] if len(keys) >= self._cap else _INF

    def clear(self) -> None:
        self.levels.clear()
        self._heap.clear()
        self._pending.clear()
        self._best = None
        self._sorted = []
        if self._keys is not None:
            self._keys = []
            self._limit = _INF
            self._forget_arrays()

    def load(self, levels: Iterable[Level]) -> None:
        """Replace the side with ``levels`` (zero amounts are ignored)."""
        self.levels = {p: q for p, q in levels if q}
        self._best = None
        self._sorted = None
        if self._keys is not None:
            self._rebuild_keys()
            self._forget_arrays()
        else:
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        s = self._sign
        self._heap = [s * p for p in self.levels]
        heapq.heapify(self._heap)
        self._pending = []

    def apply(self, changes: Iterable[Level]) -> None:
        """Apply absolute level changes: amount 0 removes the price, anything else sets it."""
        levels = self.levels
        keys = self._keys
        if keys is not None:
            # A tracked side (the replay's hottest loop): the dict and the best keys in one pass.
            if type(changes) is not tuple:
                changes = tuple(changes)  # read again by ``arrays``
            limit = self._limit
            insort = bisect.insort
            find = bisect.bisect_left
            if self.is_bid:
                for p, q in changes:
                    if q:
                        if p not in levels and -p <= limit:
                            insort(keys, -p)
                        levels[p] = q
                    elif p in levels:
                        del levels[p]
                        if -p <= limit:
                            del keys[find(keys, -p)]
            else:
                for p, q in changes:
                    if q:
                        if p not in levels and p <= limit:
                            insort(keys, p)
                        levels[p] = q
                    elif p in levels:
                        del levels[p]
                        if p <= limit:
                            del keys[find(keys, p)]
            self._sorted = None
            if len(keys) < self._need and limit != _INF:
                self._rebuild_keys()
            elif len(keys) > 4 * self._cap:
                del keys[self._cap :]
                self._limit = keys[-1]
            if self._arrays is not None:
                self._log.append(changes)
                self._logged += len(changes)
                # Once the next read would convert the side rather than merge, the log is of no use: stop it
                # (a shallow side read every 2 s stops after a few messages; it also bounds the log).
                if not worth_merging(self._logged, len(levels)):
                    self._forget_arrays()
            return
        # Untracked: locals only, no method calls, one branch per side.
        pending = self._pending
        best = self._best
        if self.is_bid:
            for p, q in changes:
                if q:
                    if p not in levels:
                        pending.append(p)
                        if best is not None and p > best:
                            best = p
                    levels[p] = q
                elif p in levels:
                    del levels[p]
                    if p == best:
                        best = None
        else:
            for p, q in changes:
                if q:
                    if p not in levels:
                        pending.append(p)
                        if best is not None and p < best:
                            best = p
                    levels[p] = q
                elif p in levels:
                    del levels[p]
                    if p == best:
                        best = None
        self._best = best
        # Almost every Binance message adds or removes a price, so the sorted view is simply redone
        # on the next sorted read rather than tracking whether this message changed the price set.
        self._sorted = None
        # Bounded: each pending entry keeps its price's float alive after the level is gone. In a market
        # whose best rarely empties, nothing else clears the list (a synthetic 190-level side gained 2-3
        # a second, ~6 MB over 20 pairs in half an hour, before the old bound of 4n + 4096); the rebuild
        # is one heapify of the live prices per 1024 or more insertions.
        if len(pending) > len(levels) + 1024:
            self._rebuild_heap()

    def best_levels(self, n: int) -> list[Level]:
        """The ``n`` best levels, best first (fewer when the side has fewer): ``top(n)``, which a tracked side
        answers without sorting the side for ``n`` up to the ``need`` given to ``track``."""
        keys = self._keys
        if keys is None or n > self._need:
            return self.top(n)
        levels = self.levels
        if self.is_bid:
            return [(-k, levels[-k]) for k in keys[:n]]
        return [(k, levels[k]) for k in keys[:n]]

    def arrays(self) -> SideArrays:
        """(prices ascending, sizes) of every level as float64 arrays; read-only (a tracked side may hand the
        same arrays to the next call, or update them from the prices changed since, ``arrays.merge_changes``)."""
        if self._keys is None:
            return sorted_arrays(self.levels)
        arr = self._arrays
        if arr is not None and not self._log:
            return arr
        if arr is not None and worth_merging(self._logged, len(self.levels)):
            changed: dict[float, float] = {}
            for message in self._log:
                changed.update(message)  # the last change of each price is its size now
            arr = merge_changes(arr[0], arr[1], changed)
        else:
            arr = sorted_arrays(self.levels)
        arr[0].flags.writeable = False  # handed out again: a reader that wrote would change the next read
        arr[1].flags.writeable = False
        self._arrays = arr
        self._log = []
        self._logged = 0
        return arr

    def set(self, price: float, amount: float) -> None:
        self.apply(((price, amount),))

    def best_price(self) -> float | None:
        keys = self._keys
        if keys is not None:
            if not keys:
                return None
            return -keys[0] if self.is_bid else keys[0]
        best = self._best
        if best is not None:
            return best
        levels = self.levels
        heap = self._heap
        s = self._sign
        pending = self._pending
        if pending:
            push = heapq.heappush
            for p in pending:
                if p in levels:
                    push(heap, s * p)
            pending.clear()
            # Removed prices are only dropped when they surface; compact before they dominate.
            if len(heap) > 2 * len(levels) + 1024:
                self._rebuild_heap()
                heap = self._heap
        pop = heapq.heappop
        while heap:
            p = s * heap[0]
            if p in levels:
                self._best = p
                return p
            pop(heap)
        return None

    def best(self) -> Level | None:
        p = self.best_price()
        return None if p is None else (p, self.levels[p])

    def _ascending(self) -> list[float]:
        if self._sorted is None:
            self._sorted = sorted(self.levels)
        return self._sorted

    def top(self, n: int | None = None) -> list[Level]:
        """The ``n`` best levels (all when None), best first."""
        prices = self._ascending()
        levels = self.levels
        if self.is_bid:
            chosen = prices[::-1] if n is None or n >= len(prices) else prices[len(prices) - n :][::-1]
        else:
            chosen = prices if n is None else prices[:n]
        return [(p, levels[p]) for p in chosen]

    def between(self, low: float, high: float) -> list[Level]:
        """Every level with ``low <= price <= high``, in ascending price order."""
        prices = self._ascending()
        i = bisect.bisect_left(prices, low)
        j = bisect.bisect_right(prices, high)
        levels = self.levels
        return [(p, levels[p]) for p in prices[i:j]]

    def amount_at(self, price: float) -> float:
        return self.levels.get(price, 0.0)


class OrderBook:
    """A two-sided L2 book for one symbol. Knows nothing of sequence ids: see ``sequence.py``."""

    __slots__ = ("bids", "asks", "update_id")

    def __init__(self) -> None:
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.update_id = -1

    def load_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int = -1) -> None:
        self.bids.load(bids)
        self.asks.load(asks)
        self.update_id = update_id

    def apply(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int = -1) -> None:
        self.bids.apply(bids)
        self.asks.apply(asks)
        if update_id >= 0:
            self.update_id = update_id

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.update_id = -1

    def best_bid(self) -> Level | None:
        return self.bids.best()

    def best_ask(self) -> Level | None:
        return self.asks.best()

    def mid(self) -> float | None:
        b = self.bids.best_price()
        a = self.asks.best_price()
        if b is None or a is None:
            return None
        return (b + a) / 2.0

    def spread(self) -> float | None:
        b = self.bids.best_price()
        a = self.asks.best_price()
        if b is None or a is None:
            return None
        return a - b

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask: the book cannot be right."""
        b = self.bids.best_price()
        a = self.asks.best_price()
        return b is not None and a is not None and b >= a

    def top(self, n: int | None = None) -> tuple[list[Level], list[Level]]:
        """The ``n`` best levels of each side, best first: ``(bids, asks)``."""
        return self.bids.top(n), self.asks.top(n)

    def between(self, low: float, high: float) -> tuple[list[Level], list[Level]]:
        """Every level of each side with ``low <= price <= high``, ascending price: ``(bids, asks)``."""
        return self.bids.between(low, high), self.asks.between(low, high)
