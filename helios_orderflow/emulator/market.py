"""Per-symbol state of the local exchange: the published book, update ids, trades and candles.

Every change the server publishes goes through ``MarketState``: a market driver (synthetic model or
recording replay) calls ``set_level``/``add_trade``; ``flush`` closes one diff message. The book held here is
therefore exactly the book a client rebuilds from a REST snapshot plus the diffs, and:

- update ids: every level change consumes one id; a diff covers ``U..u`` with ``U == previous u + 1``;
  ``pu`` (futures) is the previous diff's ``u``. A snapshot taken after a flush has
  ``lastUpdateId == u`` of the last flushed diff; changes not yet flushed are not in it.
- trade ids count from 1 per symbol with no gaps; aggregate trade ids likewise (one per taker order and
  price level).
- prices and quantities are integers in the instrument's units (see ``instruments``).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.klines import CandleBook


@dataclass(slots=True)
class TradeRecord:
    """One trade as published (``@trade``, ``/api/v3/trades``)."""

    trade_id: int
    agg_id: int
    ts_ms: int
    price_units: int
    qty_units: int
    buyer_is_maker: bool  # True when the taker sold


@dataclass(slots=True)
class AggTradeRecord:
    agg_id: int
    first_trade_id: int
    last_trade_id: int
    ts_ms: int
    price_units: int
    qty_units: int
    buyer_is_maker: bool


@dataclass(slots=True)
class Diff:
    """One published depth diff. ``bids``/``asks``: (price_units, qty_units), qty 0 = removed."""

    first_id: int  # U
    last_id: int  # u
    prev_id: int  # pu
    ts_ms: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


@dataclass(slots=True)
class Batch:
    """What one ``flush`` produced: at most one diff, the trades since the last flush, and the BBO."""

    diff: Diff | None
    trades: list[TradeRecord] = field(default_factory=list)
    agg_trades: list[AggTradeRecord] = field(default_factory=list)
    bbo_changed: bool = False


class MarketState:
    """The book, ids, recent trades and candles of one symbol."""

    RECENT_TRADES = 1000

    def __init__(self, inst: Instrument, first_update_id: int = 1_000_000) -> None:
        self.inst = inst
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.last_update_id = first_update_id
        self.next_trade_id = 1
        self.next_agg_id = 1
        self.trades: deque[TradeRecord] = deque(maxlen=self.RECENT_TRADES)
        self.agg_trades: deque[AggTradeRecord] = deque(maxlen=self.RECENT_TRADES)
        self.candles = CandleBook(inst)
        self.last_ts_ms = 0
        self._pend_bids: dict[int, int] = {}
        self._pend_asks: dict[int, int] = {}
        self._pend_ops = 0
        self._pend_trades: list[TradeRecord] = []
        self._pend_aggs: list[AggTradeRecord] = []
        self._bbo = (0, 0, 0, 0)
        self._best_bid: int | None = None
        self._best_ask: int | None = None

    # ---- changes -------------------------------------------------------------------------------
    def set_level(self, is_bid: bool, price_units: int, qty_units: int) -> None:
        """Set the absolute size at a price (0 removes it); published with the next ``flush``."""
        book = self.bids if is_bid else self.asks
        if qty_units > 0:
            book[price_units] = qty_units
        else:
            book.pop(price_units, None)
        (self._pend_bids if is_bid else self._pend_asks)[price_units] = qty_units
        self._pend_ops += 1
        self._best_bid = self._best_ask = None

    def load_book(self, bids: dict[int, int], asks: dict[int, int]) -> None:
        """Make the book equal to ``bids``/``asks`` by publishing the needed level changes."""
        for mine, theirs, is_bid in ((self.bids, bids, True), (self.asks, asks, False)):
            for p in [p for p in mine if p not in theirs]:
                self.set_level(is_bid, p, 0)
            for p, q in theirs.items():
                if mine.get(p) != q:
                    self.set_level(is_bid, p, q)

    def skip_ids(self, n: int) -> None:
        """Consume ``n`` update ids with no change (a sequence gap as a client sees it)."""
        self.last_update_id += n

    def add_trade(self, ts_ms: int, price_units: int, qty_units: int, taker_buys: bool, new_agg: bool) -> TradeRecord:
        """Record one fill. ``new_agg`` starts a new aggregate trade (new taker order or price)."""
        if new_agg or not self._pend_aggs:
            agg = AggTradeRecord(self.next_agg_id, self.next_trade_id, self.next_trade_id, ts_ms, price_units,
                                 qty_units, not taker_buys)
            self.next_agg_id += 1
            self._pend_aggs.append(agg)
            self.agg_trades.append(agg)
        else:
            agg = self._pend_aggs[-1]
            agg.last_trade_id = self.next_trade_id
            agg.qty_units += qty_units
        trade = TradeRecord(self.next_trade_id, agg.agg_id, ts_ms, price_units, qty_units, not taker_buys)
        self.next_trade_id += 1
        self._pend_trades.append(trade)
        self.trades.append(trade)
        self.candles.add_trade(ts_ms, price_units, qty_units, taker_buys)
        return trade

    def flush(self, ts_ms: int) -> Batch:
        """Close the pending changes into one diff (None when nothing changed)."""
        self.last_ts_ms = ts_ms
        diff = None
        if self._pend_ops:
            first = self.last_update_id + 1
            prev = self.last_update_id
            self.last_update_id += self._pend_ops
            diff = Diff(first, self.last_update_id, prev, ts_ms,
                        sorted(self._pend_bids.items(), reverse=True), sorted(self._pend_asks.items()))
            self._pend_bids = {}
            self._pend_asks = {}
            self._pend_ops = 0
        batch = Batch(diff, self._pend_trades, self._pend_aggs)
        self._pend_trades = []
        self._pend_aggs = []
        if diff is not None:
            bbo = self.bbo()
            if bbo != self._bbo:
                self._bbo = bbo
                batch.bbo_changed = True
        return batch

    # ---- reads ---------------------------------------------------------------------------------
    def best_bid(self) -> int | None:
        if self._best_bid is None and self.bids:
            self._best_bid = max(self.bids)
        return self._best_bid

    def best_ask(self) -> int | None:
        if self._best_ask is None and self.asks:
            self._best_ask = min(self.asks)
        return self._best_ask

    def bbo(self) -> tuple[int, int, int, int]:
        """(bid price, bid qty, ask price, ask qty) in units; zeros for an empty side."""
        b, a = self.best_bid(), self.best_ask()
        return (b or 0, self.bids.get(b, 0) if b else 0, a or 0, self.asks.get(a, 0) if a else 0)

    def top(self, limit: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Best ``limit`` levels per side, best first, as (price_units, qty_units)."""
        bids = heapq.nlargest(limit, self.bids.items())
        asks = heapq.nsmallest(limit, self.asks.items())
        return bids, asks

    def top_floats(self, limit: int) -> tuple[list[list[float]], list[list[float]]]:
        """Best ``limit`` levels as the floats a client parses from the wire: [[price, amount], ...]."""
        bids, asks = self.top(limit)
        i = self.inst
        return ([[i.price(p), i.qty(q)] for p, q in bids], [[i.price(p), i.qty(q)] for p, q in asks])

    def last_price(self) -> int:
        """Last trade price in units, else the mid (or 0 with an empty book)."""
        if self.trades:
            return self.trades[-1].price_units
        b, a = self.best_bid(), self.best_ask()
        if b and a:
            return (b + a) // 2 // self.inst.tick_units * self.inst.tick_units
        return 0
