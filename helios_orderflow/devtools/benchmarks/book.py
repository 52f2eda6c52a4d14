"""Order book update speed against ccxt's own order book, on the real BTCUSDT diff stream.

Both books start from the same REST snapshot and get the same aligned diffs (already parsed to floats,
so parsing is not measured). After every message each side's best price is read, as the engine does
(ccxt's sorted arrays give it at index 0; ours from the lazy heap). The final books must be identical,
level for level; the figure is the median of several alternating runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from helios_orderflow.book.order_book import OrderBook
from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.events import BookDelta, BookSnapshot
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.importers.binance_raw import iter_events


def aligned_stream() -> tuple[BookSnapshot, list[BookDelta]]:
    """The snapshot and the diffs that Binance's procedure applies after it."""
    snapshot: BookSnapshot | None = None
    applied: list[BookDelta] = []
    sync = BookSync()
    buffered: list[BookDelta] = []
    for ev in iter_events(BINANCE_BTCUSDT_FILES, progress=False):
        if isinstance(ev, BookSnapshot):
            snapshot = ev
            before = sync.book.update_id
            sync.on_snapshot(ev)
            assert before == -1
            applied.extend(d for d in buffered if d.update_id > ev.update_id)
        elif isinstance(ev, BookDelta):
            if snapshot is None:
                buffered.append(ev)
                sync.on_delta(ev)
            elif sync.on_delta(ev).value == "applied":
                applied.append(ev)
    assert snapshot is not None and sync.gaps == 0
    return snapshot, applied


def _run_ours(snapshot: BookSnapshot, deltas: list[BookDelta]) -> tuple[float, OrderBook]:
    book = OrderBook()
    book.load_snapshot(snapshot.bids, snapshot.asks, snapshot.update_id)
    bids, asks = book.bids, book.asks
    t0 = time.perf_counter()
    for d in deltas:
        bids.apply(d.bids)
        asks.apply(d.asks)
        bids.best_price()
        asks.best_price()
    return time.perf_counter() - t0, book


def _run_ccxt(snapshot: BookSnapshot, batches: list[tuple[list[list[float]], list[list[float]]]]) -> tuple[float, Any]:
    from ccxt.async_support.base.ws.order_book import OrderBook as CcxtOrderBook

    ob = CcxtOrderBook({"bids": [list(x) for x in snapshot.bids], "asks": [list(x) for x in snapshot.asks]})
    bids, asks = ob["bids"], ob["asks"]
    t0 = time.perf_counter()
    for b, a in batches:
        for level in b:
            bids.storeArray(level)
        for level in a:
            asks.storeArray(level)
        _ = bids[0] if bids else None
        _ = asks[0] if asks else None
    return time.perf_counter() - t0, ob


def run(quick: bool = False) -> dict[str, float | int | str]:
    snapshot, deltas = aligned_stream()
    levels = sum(len(d.bids) + len(d.asks) for d in deltas)
    repeats = 3 if quick else 9
    ours: list[float] = []
    theirs: list[float] = []
    identical = True
    for _ in range(repeats):
        # ccxt stores the very list it is given, so each run gets fresh ones (built outside the timing)
        batches = [([list(x) for x in d.bids], [list(x) for x in d.asks]) for d in deltas]
        t_ccxt, ob = _run_ccxt(snapshot, batches)
        t_ours, book = _run_ours(snapshot, deltas)
        theirs.append(t_ccxt)
        ours.append(t_ours)
        bids, asks = book.top()
        identical = identical and (
            [list(x) for x in bids] == [list(x) for x in ob["bids"]]
            and [list(x) for x in asks] == [list(x) for x in ob["asks"]]
        )
    t_ours = statistics.median(ours)
    t_ccxt = statistics.median(theirs)
    return {
        "book_messages": len(deltas),
        "book_level_updates": levels,
        "book_updates_per_s": levels / t_ours,
        "ccxt_book_updates_per_s": levels / t_ccxt,
        "book_speedup_vs_ccxt": t_ccxt / t_ours,
        "book_final_identical_to_ccxt": int(identical),
    }
