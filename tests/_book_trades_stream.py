"""A small synthetic Binance-style stream with a book and trades, for tests that need both and need them in
exchange-time order (receive time = exchange time, so the engine never counts a trade late)."""

from __future__ import annotations

import numpy as np

from helios_orderflow.core.events import BookDelta, BookSnapshot, Event, Trade


def book_and_trades(exchange: str, pair: str, start_us: int, *, minutes: int, book_every_us: int = 250_000,
                    trades_per_update: float = 1.5, depth: int = 20, momentum: float = 0.0,
                    seed: int = 3) -> list[Event]:
    """A ``depth``-level book around a random-walk mid (tick 0.1, near 42,000) updated every ``book_every_us`` (ids
    chained as on Binance spot), and on average ``trades_per_update`` taker trades at the best prices between
    updates, at times with sub-millisecond parts. ``momentum`` > 0 adds a persistent drift (AR(1) with that
    coefficient, in ticks per update): trends a model can learn."""
    rng = np.random.default_rng(seed)
    tick = 0.1
    mid_ticks = 420_000
    uid = 1000
    drift = 0.0

    def book(mid: int) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        bids = tuple((round((mid - i) * tick, 1), float(rng.uniform(0.1, 3.0))) for i in range(1, depth + 1))
        asks = tuple((round((mid + i) * tick, 1), float(rng.uniform(0.1, 3.0))) for i in range(1, depth + 1))
        return bids, asks

    bids, asks = book(mid_ticks)
    events: list[Event] = [BookSnapshot(exchange, pair, start_us, start_us, uid, bids, asks)]
    trade_id = 5_000_000
    t = start_us
    gap = max(1, book_every_us // 5)
    for _ in range(minutes * 60_000_000 // book_every_us):
        for _ in range(int(rng.poisson(trades_per_update))):
            t += int(rng.integers(1, gap))
            buy = bool(rng.random() < 0.5)
            trade_id += 1
            events.append(Trade(exchange, pair, t, t, asks[0][0] if buy else bids[0][0],
                                round(float(rng.exponential(0.05)), 5), "buy" if buy else "sell", str(trade_id)))
        t = (t // book_every_us + 1) * book_every_us + int(rng.integers(0, 999))
        mid_ticks += int(rng.integers(-2, 3))
        if momentum > 0:
            drift = momentum * drift + float(rng.normal(0.0, 0.4))
            mid_ticks += round(drift)
        new_bids, new_asks = book(mid_ticks)
        gone_b = {p for p, _ in bids} - {p for p, _ in new_bids}
        gone_a = {p for p, _ in asks} - {p for p, _ in new_asks}
        uid += 1
        events.append(BookDelta(exchange, pair, t, t, uid, uid, -1,
                                new_bids + tuple((p, 0.0) for p in sorted(gone_b)),
                                new_asks + tuple((p, 0.0) for p in sorted(gone_a))))
        bids, asks = new_bids, new_asks
    return events
