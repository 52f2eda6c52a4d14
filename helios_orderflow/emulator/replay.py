"""Replay a Helios recording through the local exchange, in real time or ``speed`` times faster.

Events are played in the recording's order (receive time ``local_ts_us``); event time maps to simulated
time as ``origin_us + (local_ts_us - first_local_ts_us) / speed``, so the published timestamps (``E``, trade
``T``, candles) are the recording's receive times shifted to now and compressed by ``speed``.

Books: per symbol, as Binance's sync procedure says: diffs before the first snapshot are buffered, the
snapshot loads the book (published as level changes), buffered and later diffs already in it
(``u <= lastUpdateId``) are skipped, the rest applied; ``BestBidOffer`` and ``FeedGap``
events are not replayed (the server derives its own best bid/offer). The server publishes its own update
ids and trade ids (counting on from where they are), never the recording's, so they stay gap-free.

The loop seam (``loop=True``): after the last event the recording starts over, shifted by its span plus
1 s. The first snapshot of the new pass is published as one diff that turns the last book into the
snapshot's book; update ids, trade ids and timestamps continue without a gap, so a client sees a price
jump but no sequence break and no reason to resync. Candles continue from the last one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from decimal import Decimal

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import BookDelta, BookSnapshot, Event, Trade
from helios_orderflow.emulator.instruments import Instrument, instrument_for_data
from helios_orderflow.emulator.market import MarketState

SEAM_US = 1_000_000


def _decimals(x: float) -> int:
    """Decimal places of the shortest repr of ``x``: ``30243.4 -> 1``, ``1.117e-07 -> 10`` (a thin pair's
    price in BTC; a fixed 8 for exponent forms rounded such prices onto one level)."""
    exponent = Decimal(repr(float(x))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 8


class ReplaySource:
    """A recording as a server market source. ``events`` (a callable returning a fresh iterator of the
    recording's events) defaults to ``recording.reader.read_events(root)`` filtered to ``symbols``."""

    def __init__(self, root: str | os.PathLike[str] | None, symbols: list[str] | None = None, speed: float = 1.0,
                 loop: bool = False, history_minutes: int = 3000, origin_us: int | None = None,
                 events: Callable[[], Iterator[Event]] | None = None, scan_events: int = 20_000) -> None:
        import time

        if speed <= 0:
            raise HeliosError(f"replay speed must be > 0, got {speed}")
        if events is None:
            if root is None:
                raise HeliosError("replay needs a recording directory")
            from helios_orderflow.recording.reader import list_streams, read_events

            streams = list_streams(root)
            if symbols:
                missing = sorted(set(symbols) - {s for _, s in streams})
                if missing:
                    raise HeliosError(f"recording '{root}' has no {', '.join(missing)}; it has "
                                      f"{', '.join(s for _, s in streams) or 'no streams'}")
            wanted = set(symbols) if symbols else None

            def events() -> Iterator[Event]:
                for ev in read_events(root):
                    if wanted is None or ev.symbol in wanted:
                        yield ev

        self._events = events
        self._root = root
        self.speed = speed
        self.loop = loop
        self.passes = 0
        self.consumed = 0  # recording events played so far (all kinds, all passes)
        self.origin_us = origin_us if origin_us is not None else int(time.time()) * 1_000_000
        self.states: list[MarketState] = []
        self._state: dict[str, MarketState] = {}
        self._synced: dict[str, int | None] = {}  # symbol -> snapshot update id (None: no snapshot yet)
        self._buffer: dict[str, list[BookDelta]] = {}  # diffs seen before the first snapshot of a pass
        first, last = self._scan(scan_events, history_minutes, span_from_footers=root is not None)
        self._first_local = first
        self._span_us = max(0, last - first)
        self._offset_us = 0  # added per loop pass
        self._it = self._events()
        self._next: Event | None = next(self._it, None)
        self._last_agg: dict[str, tuple[int, int, bool]] = {}
        if self._next is None:
            raise HeliosError(f"recording '{root}' has no events to replay")

    def _scan(self, n: int, history_minutes: int, span_from_footers: bool) -> tuple[int, int]:
        """Decimals and first price from the first ``n`` events (to list instruments and back-fill), and the
        recording's time span: from Parquet footers when it can, else by walking every event."""
        pdec: dict[str, int] = {}
        qdec: dict[str, int] = {}
        price: dict[str, float] = {}
        first = last = None
        for k, ev in enumerate(self._events()):
            if first is None:
                first = ev.local_ts_us
            last = ev.local_ts_us
            if k >= n:
                if span_from_footers:
                    break
                continue  # keep walking for the span only
            sym = ev.symbol
            if isinstance(ev, (BookSnapshot, BookDelta)):
                for p, q in (*ev.bids[:50], *ev.asks[:50]):
                    pdec[sym] = max(pdec.get(sym, 0), _decimals(p))
                    qdec[sym] = max(qdec.get(sym, 0), _decimals(q))
                if isinstance(ev, BookSnapshot) and ev.bids and ev.asks:
                    price.setdefault(sym, (ev.bids[0][0] + ev.asks[0][0]) / 2)
            elif isinstance(ev, Trade):
                pdec[sym] = max(pdec.get(sym, 0), _decimals(ev.price))
                qdec[sym] = max(qdec.get(sym, 0), _decimals(ev.amount))
                price.setdefault(sym, ev.price)
        if first is None or last is None:
            raise HeliosError("the recording has no events to replay")
        if span_from_footers and self._root is not None:
            from helios_orderflow.recording.reader import list_streams, stream_span

            # footers hold exchange times; the loop seam only needs the span, not the exact receive time
            spans = [stream_span(self._root, ex, sym) for ex, sym in list_streams(self._root) if sym in pdec]
            last = max(last, first + max(b for _, b in spans) - min(a for a, _ in spans))
        for sym in sorted(pdec):
            if sym not in price:
                continue
            inst: Instrument = instrument_for_data(sym, pdec[sym], qdec.get(sym, 8), price[sym])
            st = MarketState(inst)
            typical = max(inst.step_units, inst.qty_to_units(20000.0 / price[sym]))
            st.candles.backfill(self.origin_us // 1000, history_minutes, f"replay:{sym}", typical,
                                inst.price_to_units(price[sym]))
            self.states.append(st)
            self._state[sym] = st
            self._synced[sym] = None
        if not self.states:
            raise HeliosError("the recording has no book or trade events with prices to replay")
        return first, last

    def _time(self, local_ts_us: int) -> int:
        return self.origin_us + self._offset_us + int((local_ts_us - self._first_local) / self.speed)

    def advance(self, until_us: int) -> None:
        while self._next is not None and self._time(self._next.local_ts_us) < until_us:
            self._apply(self._next)
            self.consumed += 1
            self._next = next(self._it, None)
            if self._next is None and self.loop:
                self.passes += 1
                self._offset_us += int(self._span_us / self.speed) + SEAM_US
                self._it = self._events()
                self._next = next(self._it, None)
                for sym in self._synced:
                    self._synced[sym] = None
                self._buffer.clear()

    @staticmethod
    def _apply_delta(st: MarketState, ev: BookDelta) -> None:
        inst = st.inst
        for p, q in ev.bids:
            st.set_level(True, inst.price_to_units(p), inst.qty_to_units(q))
        for p, q in ev.asks:
            st.set_level(False, inst.price_to_units(p), inst.qty_to_units(q))

    def _apply(self, ev: Event) -> None:
        st = self._state.get(ev.symbol)
        if st is None:
            return
        inst = st.inst
        if isinstance(ev, BookSnapshot):
            st.load_book({inst.price_to_units(p): inst.qty_to_units(q) for p, q in ev.bids},
                         {inst.price_to_units(p): inst.qty_to_units(q) for p, q in ev.asks})
            self._synced[ev.symbol] = ev.update_id
            # Binance's procedure: diffs buffered before the snapshot that end after it are applied
            for buffered in self._buffer.pop(ev.symbol, []):
                if buffered.update_id > ev.update_id >= 0:
                    self._apply_delta(st, buffered)
        elif isinstance(ev, BookDelta):
            snap = self._synced.get(ev.symbol)
            if snap is None:
                buf = self._buffer.setdefault(ev.symbol, [])
                if len(buf) < 10_000:
                    buf.append(ev)  # before the first snapshot of this pass
                return
            if snap >= 0 and ev.update_id >= 0 and ev.update_id <= snap:
                return  # already in the snapshot
            self._apply_delta(st, ev)
        elif isinstance(ev, Trade):
            ts_ms = self._time(ev.local_ts_us) // 1000
            price = inst.price_to_units(ev.price)
            buy = ev.side == "buy"
            key = (ts_ms, price, buy)
            new_agg = self._last_agg.get(ev.symbol) != key
            self._last_agg[ev.symbol] = key
            st.add_trade(ts_ms, price, inst.qty_to_units(ev.amount), buy, new_agg)
