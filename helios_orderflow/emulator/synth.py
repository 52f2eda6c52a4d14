"""``helios synth``: the synthetic market written as a Helios recording, as fast as it computes.

The events are those the server would publish for the same (seed, symbols, origin): one ``BookSnapshot``
per symbol at the origin (followed by the diff that built it, ending at its id), then per 100 ms step and
symbol one ``BookDelta`` (the step's diff, ids ``U``/``u`` and ``pu``), its ``Trade`` events and a
``BestBidOffer`` when the best changed. ``local_ts_us`` is the end
of the step (when a client would have received it), ``ts_us`` the diff's step end or the trade's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Event, Trade
from helios_orderflow.emulator.server import STEP_US
from helios_orderflow.emulator.synthetic import SyntheticSource


def exchange_id(market: str) -> str:
    return "binance" if market == "spot" else "binanceusdm"


def synth_events(symbols: list[str], seed: int, origin_us: int, duration_us: int,
                 snapshot_depth: int = 1000) -> Iterator[Event]:
    """The synthetic market of ``symbols`` from ``origin_us`` for ``duration_us`` as recording events."""
    src = SyntheticSource(symbols, seed=seed, origin_us=origin_us, history_minutes=0)
    for st in src.states:
        # The seeded book is the snapshot; the diff that built it (ending at the snapshot's id) follows it, as
        # a live client has it buffered: spot sync drops it (u <= lastUpdateId), futures sync applies it first
        # (U <= lastUpdateId <= u), and the next diff's pu points at it.
        seed_diff = st.flush(origin_us // 1000).diff
        i = st.inst
        ex = exchange_id(i.market)
        bids, asks = st.top(snapshot_depth)
        yield BookSnapshot(ex, i.symbol, origin_us, origin_us, st.last_update_id,
                           tuple((i.price(p), i.qty(q)) for p, q in bids),
                           tuple((i.price(p), i.qty(q)) for p, q in asks))
        if seed_diff is not None:
            yield BookDelta(ex, i.symbol, origin_us, origin_us, seed_diff.first_id, seed_diff.last_id,
                            seed_diff.prev_id if i.market != "spot" else -1,
                            tuple((i.price(p), i.qty(q)) for p, q in seed_diff.bids),
                            tuple((i.price(p), i.qty(q)) for p, q in seed_diff.asks))
    t = origin_us
    end = origin_us + duration_us
    while t < end:
        t += STEP_US
        src.advance(t)
        ts_ms = t // 1000
        for st in src.states:
            batch = st.flush(ts_ms)
            i = st.inst
            ex = exchange_id(i.market)
            d = batch.diff
            if d is not None:
                yield BookDelta(ex, i.symbol, t, t, d.first_id, d.last_id, d.prev_id if i.market != "spot" else -1,
                                tuple((i.price(p), i.qty(q)) for p, q in d.bids),
                                tuple((i.price(p), i.qty(q)) for p, q in d.asks))
            for tr in batch.trades:
                yield Trade(ex, i.symbol, tr.ts_ms * 1000, t, i.price(tr.price_units), i.qty(tr.qty_units),
                            "sell" if tr.buyer_is_maker else "buy", str(tr.trade_id))
            if batch.bbo_changed:
                b = st.bbo()
                yield BestBidOffer(ex, i.symbol, t, t, st.last_update_id, i.price(b[0]), i.qty(b[1]),
                                   i.price(b[2]), i.qty(b[3]))


def write_synthetic(out: str, symbols: list[str], seed: int, origin_us: int, duration_us: int,
                    progress: Callable[[int, int], None] | None = None) -> tuple[int, float]:
    """Write the synthetic market to a recording at ``out``; returns (events written, seconds taken)."""
    from helios_orderflow.core.settings import RecordingSettings
    from helios_orderflow.recording.writer import RecordingWriter

    t0 = time.perf_counter()
    n = 0
    writer = RecordingWriter(out, RecordingSettings(), flush_by_time=False)
    try:
        for ev in synth_events(symbols, seed, origin_us, duration_us):
            writer.write(ev)
            n += 1
            if progress is not None and n % 200_000 == 0:
                progress(n, ev.local_ts_us - origin_us)
    finally:
        writer.close()
    return n, time.perf_counter() - t0
