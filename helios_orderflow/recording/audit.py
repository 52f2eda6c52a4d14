"""Inspect a stream of events: rebuild every book and check it against the venue's own figures.

Used by ``helios inspect`` on recordings and straight on importer output, so both paths run the same code
and must agree. For each (exchange, symbol) it reports:

- ``first_ts_us``/``last_ts_us``: first and last event time (venue time, µs).
- ``snapshots``: book snapshots; ``book_events``: book delta messages (every one received, applied or not);
  ``stale_dropped``: deltas older than the book (Binance's "drop u <= lastUpdateId" rule).
- ``seq_gaps``: sequence breaks by the venue's id rule (see ``book/sync.py``: Binance, Gate.io and KuCoin
  ids); ``declared_gaps``: FeedGap events in the data, among them the checksum mismatches the importers
  found (Kraken, OKX, Bitget: the mismatching update is never in the data); ``last_declared_gap`` is the
  last one's reason.
- ``crossed``: applied messages after which best bid >= best ask.
- ``bbo_checks``/``bbo_mismatches``: recorded best bid/offer events compared with the rebuilt book. With
  update ids, a BBO is compared with the book as it stood right after the delta whose last id equals the
  BBO's id (whichever arrived first); a BBO whose id falls inside a delta's range cannot be checked and is
  not counted. Without ids, it is compared with the book at the moment it arrives.
- ``best_bid``/``best_ask``: ``[price, amount]`` at the end; ``taker_buy``/``taker_sell``: taker volume in base
  units; ``cvd`` = taker_buy - taker_sell. Counted as the engine counts them: on a venue whose trade ids
  increase (``trade_ids.py``), a trade delivered again is not counted.
- ``duplicate_trade_ids``: trades whose id was seen before in the stream (the same trade twice);
  ``out_of_order_trade_ids``: ids below the largest seen but new; ``trade_id_restarts``: the numbering began
  again at a lower id with a later time (a restarted local exchange). Any venue whose ids are integers;
  ids are remembered for the last 200,000 trades (an older repeat counts as out of order).
  ``first_duplicate`` describes the first one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from helios_orderflow.book.sync import BookSync, DeltaResult
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, FeedGap, Level, Trade
from helios_orderflow.core.trade_ids import TradeIdAudit, TradeIdGuard, has_increasing_trade_ids

_MEMORY = 20_000  # update ids remembered for BBO matching, each way


@dataclass
class StreamReport:
    exchange: str
    symbol: str
    first_ts_us: int | None = None
    last_ts_us: int | None = None
    snapshots: int = 0
    book_events: int = 0
    stale_dropped: int = 0
    trades: int = 0
    duplicate_trade_ids: int = 0
    out_of_order_trade_ids: int = 0
    trade_id_restarts: int = 0
    trades_not_counted: int = 0
    seq_gaps: int = 0
    declared_gaps: int = 0
    crossed: int = 0
    bbo_events: int = 0
    bbo_checks: int = 0
    bbo_mismatches: int = 0
    best_bid: list[float] | None = None
    best_ask: list[float] | None = None
    taker_buy: float = 0.0
    taker_sell: float = 0.0
    cvd: float = 0.0
    in_sync: bool = False
    first_mismatch: str = ""
    last_gap: str = ""
    first_duplicate: str = ""
    last_declared_gap: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("taker_buy", "taker_sell", "cvd"):
            d[k] = round(d[k], 10)
        return d


@dataclass
class StreamInspector:
    """Inspects one (exchange, symbol) stream event by event."""

    report: StreamReport
    sync: BookSync = field(init=False)
    audit: TradeIdAudit = field(default_factory=TradeIdAudit)
    guard: TradeIdGuard | None = field(init=False)
    _best_at_u: OrderedDict[int, tuple[Level | None, Level | None]] = field(default_factory=OrderedDict)
    _pending: OrderedDict[int, BestBidOffer] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.sync = BookSync(on_applied=self._after_apply)
        self.guard = TradeIdGuard() if has_increasing_trade_ids(self.report.exchange) else None

    def on_event(self, ev: Event) -> None:
        r = self.report
        r.first_ts_us = ev.ts_us if r.first_ts_us is None else min(r.first_ts_us, ev.ts_us)
        r.last_ts_us = ev.ts_us if r.last_ts_us is None else max(r.last_ts_us, ev.ts_us)
        if isinstance(ev, BookDelta):
            r.book_events += 1
            if self.sync.on_delta(ev) is DeltaResult.GAP:
                r.last_gap = self.sync.last_gap
        elif isinstance(ev, BookSnapshot):
            r.snapshots += 1
            self.sync.on_snapshot(ev)
        elif isinstance(ev, Trade):
            r.trades += 1
            self.audit.add(ev.trade_id, ev.ts_us)
            if self.guard is not None and not self.guard.admit(ev.trade_id, ev.ts_us):
                return
            if ev.side == "buy":
                r.taker_buy += ev.amount
            else:
                r.taker_sell += ev.amount
        elif isinstance(ev, BestBidOffer):
            r.bbo_events += 1
            self._on_bbo(ev)
        elif isinstance(ev, FeedGap):
            r.declared_gaps += 1
            r.last_declared_gap = ev.reason

    def _after_apply(self) -> None:
        book = self.sync.book
        if book.is_crossed():
            self.report.crossed += 1
        self._remember(book.update_id)

    def _remember(self, update_id: int) -> None:
        if update_id == NO_ID or not self.sync.in_sync:
            return
        book = self.sync.book
        state = (book.best_bid(), book.best_ask())
        self._best_at_u[update_id] = state
        if len(self._best_at_u) > _MEMORY:
            self._best_at_u.popitem(last=False)
        pending = self._pending
        while pending:
            u, bbo = next(iter(pending.items()))
            if u > update_id:
                break
            pending.popitem(last=False)
            if u == update_id:
                self._compare(bbo, state)

    def _on_bbo(self, bbo: BestBidOffer) -> None:
        if bbo.update_id == NO_ID:
            if self.sync.in_sync:
                book = self.sync.book
                self._compare(bbo, (book.best_bid(), book.best_ask()))
            return
        state = self._best_at_u.get(bbo.update_id)
        if state is not None:
            self._compare(bbo, state)
        elif self.sync.book.update_id == NO_ID or bbo.update_id > self.sync.book.update_id or not self.sync.in_sync:
            self._pending[bbo.update_id] = bbo
            if len(self._pending) > _MEMORY:
                self._pending.popitem(last=False)

    def _compare(self, bbo: BestBidOffer, state: tuple[Level | None, Level | None]) -> None:
        r = self.report
        r.bbo_checks += 1
        bid, ask = state
        if bid != (bbo.bid_price, bbo.bid_amount) or ask != (bbo.ask_price, bbo.ask_amount):
            r.bbo_mismatches += 1
            if not r.first_mismatch:
                r.first_mismatch = (
                    f"u={bbo.update_id} at {bbo.ts_us}: venue {bbo.bid_price}x{bbo.bid_amount} / "
                    f"{bbo.ask_price}x{bbo.ask_amount}, book {bid} / {ask}"
                )

    def finish(self) -> StreamReport:
        r = self.report
        sync = self.sync
        r.seq_gaps = sync.gaps
        r.stale_dropped = sync.stale_dropped
        r.in_sync = sync.in_sync
        bid, ask = sync.book.best_bid(), sync.book.best_ask()
        r.best_bid = list(bid) if bid else None
        r.best_ask = list(ask) if ask else None
        r.cvd = r.taker_buy - r.taker_sell
        a = self.audit
        r.duplicate_trade_ids, r.out_of_order_trade_ids, r.trade_id_restarts = a.duplicates, a.out_of_order, a.restarts
        r.first_duplicate = a.first_duplicate
        r.trades_not_counted = self.guard.dropped if self.guard is not None else 0
        return r


def inspect_events(events: Iterable[Event]) -> dict[tuple[str, str], StreamReport]:
    """Inspect every (exchange, symbol) stream in ``events``; reports in first-seen order."""
    inspectors: dict[tuple[str, str], StreamInspector] = {}
    for ev in events:
        key = (ev.exchange, ev.symbol)
        insp = inspectors.get(key)
        if insp is None:
            insp = inspectors[key] = StreamInspector(StreamReport(exchange=ev.exchange, symbol=ev.symbol))
        insp.on_event(ev)
    return {k: v.finish() for k, v in inspectors.items()}
