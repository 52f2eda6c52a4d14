"""Successive observations of a ccxt order book turned into exact level changes.

``ccxt.pro``'s ``watch_order_book`` conflates: it returns its live book object whenever at least one venue
diff was applied, skipping any number of diffs when the consumer is slow, and never says which levels
changed. ``BookDiffer`` keeps a copy of the previously observed book (top ``depth`` levels per side) and
turns each new observation into one event:

- the first observation, and the first after ``reset()`` (a resubscription or resync), is a
  ``BookSnapshot`` of the top ``depth`` levels;
- every later observation is a ``BookDelta`` holding exactly the levels whose size differs from the
  previous observation (absolute sizes; 0 = the level is gone), or nothing when no level changed.

Applying the deltas in order to the snapshot therefore rebuilds, at every observation, exactly the top
``depth`` levels ccxt held at that moment; a level that leaves the top ``depth`` (pushed down by better
levels, or trimmed by ccxt's own ``limit()``) is reported removed, and reported again when it comes back.
Intermediate states ccxt went through between two observations are not seen: that is conflation, and it
is the same for every consumer of ``watch_order_book``.

Cost: comparing whole books costs O(depth) per observation (~70 us a side at 1000 levels), which for 20
pairs at 10 updates/s is most of the feed's time. For ccxt's plain book sides (``Bids``/``Asks``, which
Binance and most venues use) the differ instead notes which prices ccxt touched since the last observation
(it wraps the side's ``storeArray``, ``pop`` and ``clear`` on that one object) and compares only those, plus
the few levels that can have crossed the ``depth`` boundary: O(changes x log depth). The events are the
same either way (``tests/test_book_diff.py`` checks both against each other on random books); anything
else (a new side object, a cleared side, counted or indexed sides, plain lists) takes the full comparison.

Timestamps: ``ts_us`` is the book's ``timestamp`` (the venue's event time of the last diff ccxt applied,
milliseconds) times 1000, or ``local_ts_us`` when ccxt has none (a Binance spot REST snapshot carries no
time). ``local_ts_us`` is given by the caller: when the observation was received.

Update ids: when ccxt's ``nonce`` (Binance's ``u`` of the last applied diff, or the snapshot's
``lastUpdateId``) is an integer that increased since the previous observation, the delta carries
``first_update_id = nonce of the previous event + 1`` and ``update_id = nonce``: it is exactly the net effect of the
venue diffs in that id range, so ``BookSync``'s spot rule (``U == previous u + 1``) holds by construction.
Otherwise (no nonce, or a nonce that did not increase) all three ids are ``NO_ID`` and the delta is applied
in arrival order. ``prev_update_id`` is always ``NO_ID`` (the spot rule is the one that chains these).
"""

from __future__ import annotations

import contextlib
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from helios_orderflow.core.events import NO_ID, BookDelta, BookSnapshot, Level, Levels

#: Levels per side compared and published by default: ccxt's own default book size for Binance
#: (``watchOrderBookLimit``), which is also the depth of the REST snapshot it starts from.
DEFAULT_DEPTH = 1000


def levels_of(side: Sequence[Sequence[Any]], depth: int) -> dict[float, float]:
    """The best ``depth`` levels of a ccxt book side (``[[price, amount, ...], ...]``, best first) as
    ``{price: amount}``, insertion-ordered best first (ccxt keeps no zero amounts on a plain side; counted
    sides' zero rows are left out)."""
    top = side[:depth]
    try:
        # C-speed for the usual [price, amount] pairs; ccxt's sides never hold a zero amount. dict() takes
        # any two-item rows (ccxt's are lists); typeshed only admits tuples, and a longer row raises here.
        return dict(cast("Sequence[tuple[float, float]]", top))
    except (TypeError, ValueError):
        # Counted / indexed sides carry a third element (order count or order id) and may hold zeros.
        return {row[0]: row[1] for row in top if row[1]}


def diff_levels(prev: Mapping[float, float], cur: Mapping[float, float], descending: bool = False) -> Levels:
    """The changes that turn side ``prev`` into side ``cur``: every price whose amount differs (new or
    changed, with its new amount) in ``cur``'s own order (best first for a ccxt side), then every price
    that is gone (amount 0.0), best first (``descending`` for bids)."""
    get = prev.get
    changed: list[Level] = [(p, q) for p, q in cur.items() if get(p) != q]
    gone = [p for p in prev if p not in cur]
    if gone:
        with contextlib.suppress(TypeError):  # a junk price (fuzzed input) cannot be ordered: leave it be
            gone.sort(reverse=descending)
        changed.extend((p, 0.0) for p in gone)
    return tuple(changed)


def _ordered(changes: dict[float, float], descending: bool) -> Levels:
    """``{price: amount}`` changes as ``diff_levels`` orders them: new/changed best first, then gone."""
    if not changes:
        return ()
    prices = sorted(changes, reverse=descending)
    return tuple([(p, changes[p]) for p in prices if changes[p]] + [(p, 0.0) for p in prices if not changes[p]])


class _Tracker:
    """Notes every price ccxt stores into, or pops from, one plain ccxt book side; ``cleared`` when the
    side was emptied (a resync refills it in place). Installed on the side object itself.

    The wrappers reach the side through a weak reference and its class's functions, never a bound method of
    the side: a bound method kept in the side's own ``__dict__`` makes a reference cycle, and every book ccxt
    drops (one per resync) would then wait, with all its levels, for a full collection of the garbage
    collector, which never comes in a Freqtrade process (``live/gc_pacer.py``). Measured in the soak's bot:
    +1.4 MB a minute of such books."""

    __slots__ = ("cleared", "touched")

    def __init__(self, side: Any) -> None:
        self.touched: set[float] = set()
        self.cleared = False
        touched_add = self.touched.add
        cls = type(side)
        store, pop, clear = cls.storeArray, cls.pop, cls.clear
        ref = weakref.ref(side)

        def store_array(delta: Any) -> Any:
            touched_add(delta[0])
            return store(ref(), delta)

        def pop_(*args: Any) -> Any:
            row = pop(ref(), *args)
            touched_add(row[0])
            return row

        def clear_() -> None:
            self.cleared = True
            clear(ref())

        side.storeArray, side.pop, side.clear = store_array, pop_, clear_
        side._helios_tracker = self


def _trackable(side: Any) -> bool:
    """A plain ccxt Bids/Asks side (a list subclass with a sorted price ``_index``)."""
    from ccxt.async_support.base.ws import order_book_side as obs

    return type(side) in (obs.Bids, obs.Asks)


def _incremental(side: Any, prev: dict[float, float], tracker: _Tracker, depth: int, descending: bool
                 ) -> dict[float, float]:
    """The changes (``{price: new amount}``, 0 = gone) that turn ``prev`` (the top ``depth`` levels last
    observed) into ccxt's top ``depth`` now, from the prices ccxt touched; ``prev`` is updated in place.

    A level that nobody touched can still enter or leave the top ``depth``: pushed down by levels added
    above it, or pulled up when levels above it went. Either moves it by at most the number of touched
    prices, so only that window around the boundary is compared.
    """
    touched = tracker.touched
    keys = side._index  # sorted: prices ascending for asks, negated prices for bids
    n = len(side)
    limit = min(depth, n)
    changes: dict[float, float] = {}
    sign = -1.0 if descending else 1.0
    for p in touched:
        i = bisect_left(keys, sign * p)
        q = side[i][1] if i < limit and keys[i] == sign * p else 0.0
        if prev.get(p, 0.0) != q:
            changes[p] = q
    w = len(touched) + 1
    for i in range(max(0, depth - w), min(n, depth + w)):
        p, q = side[i][0], side[i][1]
        if i >= depth:
            q = 0.0
        if prev.get(p, 0.0) != q:
            changes[p] = q
    touched.clear()
    for p, q in changes.items():
        if q:
            prev[p] = q
        else:
            prev.pop(p, None)
    return changes


class BookDiffer:
    """One symbol's ccxt book observations into ``BookSnapshot``/``BookDelta`` events (see module doc).

    Also keeps the observed best bid and ask, and counters: ``snapshots``, ``deltas``, ``unchanged``
    (observations with no level change: no event).

    ``amount_scale``: what one unit of ccxt's amounts is in the base currency. 1 except on linear contracts
    whose venue counts in contracts of more or less than one base unit (OKX swaps: ``contractSize`` = ``ctVal``):
    the events then carry base amounts, as on every other venue, while the comparison with ccxt's book stays in
    ccxt's units.
    """

    __slots__ = (
        "amount_scale",
        "asks",
        "best",
        "bids",
        "deltas",
        "depth",
        "exchange",
        "nonce",
        "snapshots",
        "symbol",
        "unchanged",
        "_need_snapshot",
        "_sides",
    )

    def __init__(self, exchange: str, symbol: str, depth: int = DEFAULT_DEPTH) -> None:
        if depth < 1:
            raise ValueError(f"book depth must be at least 1 level, got {depth}")
        self.exchange = exchange
        self.symbol = symbol
        self.depth = depth
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.nonce: int | None = None
        self.snapshots = 0
        self.deltas = 0
        self.unchanged = 0
        self.best: tuple[float | None, float | None] = (None, None)  # observed best bid, best ask
        self.amount_scale = 1.0
        self._need_snapshot = True
        self._sides: tuple[Any, Any] | None = None  # the tracked ccxt sides the copies came from

    def reset(self) -> None:
        """The next observation starts over as a snapshot (after a resubscription, resync or gap)."""
        self._need_snapshot = True

    @property
    def has_book(self) -> bool:
        """Whether a snapshot has been observed since construction or the last ``reset()``."""
        return not self._need_snapshot

    def best_bid(self) -> float | None:
        return self.best[0]

    def best_ask(self) -> float | None:
        return self.best[1]

    def is_crossed(self) -> bool:
        """Whether the observed best bid is at or above the best ask (a broken book)."""
        bid = self.best_bid()
        ask = self.best_ask()
        return bid is not None and ask is not None and bid >= ask

    def observe(self, book: Mapping[str, Any], local_ts_us: int) -> BookSnapshot | BookDelta | None:
        """Copy what is needed from ccxt's live ``book`` and return the event it amounts to (None when no
        level changed). Must be called before awaiting ccxt again: the book object keeps changing."""
        bid_side, ask_side = book["bids"], book["asks"]
        ts_ms = book.get("timestamp")
        ts_us = int(ts_ms) * 1000 if ts_ms is not None else local_ts_us
        nonce = book.get("nonce")
        # A negative nonce is no sequence number (and -1 would read as NO_ID): treat it as absent.
        nonce = nonce if isinstance(nonce, int) and not isinstance(nonce, bool) and nonce >= 0 else None
        sides = self._sides
        if (not self._need_snapshot and sides is not None and sides[0] is bid_side and sides[1] is ask_side
                and self._clean(bid_side, ask_side)):
            # The copies came from these very sides and every change since went through the trackers.
            depth = self.depth
            bid_map = _incremental(bid_side, self.bids, bid_side._helios_tracker, depth, True)
            ask_map = _incremental(ask_side, self.asks, ask_side._helios_tracker, depth, False)
            self.best = (bid_side[0][0] if bid_side else None, ask_side[0][0] if ask_side else None)
            if not bid_map and not ask_map:
                self.unchanged += 1
                return None
            return self._delta(_ordered(bid_map, True), _ordered(ask_map, False), ts_us, local_ts_us, nonce)
        bids = levels_of(bid_side, self.depth)
        asks = levels_of(ask_side, self.depth)
        self._track(bid_side, ask_side)
        self.best = (next(iter(bids), None), next(iter(asks), None))
        if self._need_snapshot:
            self._need_snapshot = False
            self.bids, self.asks, self.nonce = bids, asks, nonce
            self.snapshots += 1
            return BookSnapshot(
                exchange=self.exchange,
                symbol=self.symbol,
                ts_us=ts_us,
                local_ts_us=local_ts_us,
                update_id=NO_ID if nonce is None else nonce,
                bids=to_base(tuple(bids.items()), self.amount_scale),
                asks=to_base(tuple(asks.items()), self.amount_scale),
            )
        bid_changes = diff_levels(self.bids, bids, descending=True)
        ask_changes = diff_levels(self.asks, asks)
        self.bids, self.asks = bids, asks
        if not bid_changes and not ask_changes:
            # No event: the nonce stays the last *emitted* one, so the next delta's id range also covers
            # the diffs of this observation and the chain of ids stays unbroken.
            self.unchanged += 1
            return None
        return self._delta(bid_changes, ask_changes, ts_us, local_ts_us, nonce)

    def _track(self, bid_side: Any, ask_side: Any) -> None:
        """After a full comparison: start (or restart) noting the changes of ccxt's sides."""
        if not (_trackable(bid_side) and _trackable(ask_side)):
            self._sides = None
            return
        for side in (bid_side, ask_side):
            tracker = getattr(side, "_helios_tracker", None) or _Tracker(side)
            tracker.touched.clear()
            tracker.cleared = False
        self._sides = (bid_side, ask_side)

    @staticmethod
    def _clean(bid_side: Any, ask_side: Any) -> bool:
        return not (bid_side._helios_tracker.cleared or ask_side._helios_tracker.cleared)

    def _delta(self, bid_changes: Levels, ask_changes: Levels, ts_us: int, local_ts_us: int,
               nonce: int | None) -> BookDelta:
        prev_nonce = self.nonce
        self.nonce = nonce
        self.deltas += 1
        if nonce is not None and prev_nonce is not None and nonce > prev_nonce:
            first_id, last_id = prev_nonce + 1, nonce
        else:
            first_id = last_id = NO_ID
        if self.amount_scale != 1.0:
            bid_changes = to_base(bid_changes, self.amount_scale)
            ask_changes = to_base(ask_changes, self.amount_scale)
        return BookDelta(
            exchange=self.exchange,
            symbol=self.symbol,
            ts_us=ts_us,
            local_ts_us=local_ts_us,
            first_update_id=first_id,
            update_id=last_id,
            prev_update_id=NO_ID,
            bids=bid_changes,
            asks=ask_changes,
        )


def base_amount(amount: float, scale: float) -> float:
    """``amount`` of ccxt's units (contracts of ``scale`` base each) in base units, as the venue's decimal would
    read: contracts x contract size, rounded to 12 decimals so that 7 x 0.01 is 0.07, not 0.07000000000000001."""
    return amount if scale == 1.0 else round(amount * scale, 12)


def to_base(levels: Levels, scale: float) -> Levels:
    """``levels`` with their amounts in base units (``base_amount``); the same tuple when ``scale`` is 1."""
    if scale == 1.0:
        return levels
    return tuple((p, base_amount(q, scale)) for p, q in levels)


def apply_levels(side: dict[float, float], changes: Iterable[Level]) -> None:
    """Apply absolute level changes to a ``{price: amount}`` side (0 removes); a reference for tests and
    checks, the engine uses ``book.OrderBook``."""
    for p, q in changes:
        if q:
            side[p] = q
        else:
            side.pop(p, None)
