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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .events import NO_ID, BookDelta, BookSnapshot, Level, Levels

#: Levels per side compared and published by default: ccxt's own default book size for Binance
#: (``watchOrderBookLimit``), which is also the depth of the REST snapshot it starts from.
DEFAULT_DEPTH = 1000


def levels_of(side: Sequence[Sequence[Any]], depth: int) -> dict[float, float]:
    """The best ``depth`` levels of a ccxt book side (``[[price, amount, ...], ...]``, best first) as
    ``{price: amount}``, insertion-ordered best first (ccxt keeps no zero amounts on a plain side; counted
    sides' zero rows are left out)."""
    top = side[:depth]
    try:
        # C-speed for the usual [price, amount] pairs; ccxt's sides never hold a zero amount.
        return dict(top)
    except (TypeError, ValueError):
        # Counted / indexed sides carry a third element (order count or order id) and may hold zeros.
        return {row[0]: row[1] for row in top if row[1]}


def diff_levels(prev: Mapping[float, float], cur: Mapping[float, float]) -> Levels:
    """The changes that turn side ``prev`` into side ``cur``: every price whose amount differs (new or
    changed, with its new amount), then every price that is gone (amount 0.0), each group in ``cur``'s
    and ``prev``'s own order (best first for book sides)."""
    get = prev.get
    changed: list[Level] = [(p, q) for p, q in cur.items() if get(p) != q]
    changed.extend((p, 0.0) for p in prev if p not in cur)
    return tuple(changed)


class BookDiffer:
    """One symbol's ccxt book observations into ``BookSnapshot``/``BookDelta`` events (see module doc).

    Also keeps the observed best bid and ask, and counters: ``snapshots``, ``deltas``, ``unchanged``
    (observations with no level change: no event).
    """

    __slots__ = (
        "asks",
        "bids",
        "deltas",
        "depth",
        "exchange",
        "nonce",
        "snapshots",
        "symbol",
        "unchanged",
        "_need_snapshot",
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
        self._need_snapshot = True

    def reset(self) -> None:
        """The next observation starts over as a snapshot (after a resubscription, resync or gap)."""
        self._need_snapshot = True

    @property
    def has_book(self) -> bool:
        """Whether a snapshot has been observed since construction or the last ``reset()``."""
        return not self._need_snapshot

    def best_bid(self) -> float | None:
        return next(iter(self.bids), None)

    def best_ask(self) -> float | None:
        return next(iter(self.asks), None)

    def is_crossed(self) -> bool:
        """Whether the observed best bid is at or above the best ask (a broken book)."""
        bid = self.best_bid()
        ask = self.best_ask()
        return bid is not None and ask is not None and bid >= ask

    def observe(self, book: Mapping[str, Any], local_ts_us: int) -> BookSnapshot | BookDelta | None:
        """Copy what is needed from ccxt's live ``book`` and return the event it amounts to (None when no
        level changed). Must be called before awaiting ccxt again: the book object keeps changing."""
        bids = levels_of(book["bids"], self.depth)
        asks = levels_of(book["asks"], self.depth)
        ts_ms = book.get("timestamp")
        ts_us = int(ts_ms) * 1000 if ts_ms is not None else local_ts_us
        nonce = book.get("nonce")
        nonce = nonce if isinstance(nonce, int) and not isinstance(nonce, bool) else None
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
                bids=tuple(bids.items()),
                asks=tuple(asks.items()),
            )
        bid_changes = diff_levels(self.bids, bids)
        ask_changes = diff_levels(self.asks, asks)
        if not bid_changes and not ask_changes:
            # No event: the nonce stays the last *emitted* one, so the next delta's id range also covers
            # the diffs of this observation and the chain of ids stays unbroken.
            self.unchanged += 1
            return None
        prev_nonce = self.nonce
        self.bids, self.asks, self.nonce = bids, asks, nonce
        self.deltas += 1
        if nonce is not None and prev_nonce is not None and nonce > prev_nonce:
            first_id, last_id = prev_nonce + 1, nonce
        else:
            first_id = last_id = NO_ID
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


def apply_levels(side: dict[float, float], changes: Iterable[Level]) -> None:
    """Apply absolute level changes to a ``{price: amount}`` side (0 removes); a reference for tests and
    checks, the engine uses ``book.OrderBook``."""
    for p, q in changes:
        if q:
            side[p] = q
        else:
            side.pop(p, None)
