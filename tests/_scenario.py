"""Hand-built event sequences for the order-flow engine's scenario tests.

One symbol on a Binance-spot-like feed: a snapshot with ``lastUpdateId`` 100, then deltas with consecutive
ids (101, 102, ...), trades, and ``tick`` events (a BestBidOffer, which changes nothing but moves the
engine's clock, so timers fire). Times are integer microseconds from ``T0``, a whole minute.
"""

from __future__ import annotations

from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, Trade
from helios_orderflow.core.settings import (
    AbsorptionSettings,
    ExhaustionSettings,
    FlowSettings,
    HeatmapSettings,
    HeliosSettings,
    WallSettings,
)
from helios_orderflow.engine.pair_engine import PairEngine

EX = "binance"
SYM = "BTC/USDT"
T0 = 1_699_999_980_000_000  # 2023-11-14T22:13:00Z, a whole minute
S = 1_000_000  # one second in µs

#: A book around mid 1000.0: bids 999.5 .. 990.5 and asks 1000.5 .. 1009.5, 1.0 each (one level per 1.0 bin).
BIDS = tuple((999.5 - i, 1.0) for i in range(10))
ASKS = tuple((1000.5 + i, 1.0) for i in range(10))


def settings(**sections: object) -> HeliosSettings:
    """Small, round settings for hand computation: tick 0.5, bin 1.0, walls within +/-1 % of mid,
    candidates at >= 3 x median, confirmed after 2 s, scans every second."""
    base = {
        "heatmap": HeatmapSettings(tick_size=0.5, bin_size=1.0, range_pct=1.0, window_s=2.0),
        "flow": FlowSettings(ofi_levels=2, depth_imbalance_bps=60.0),
        "walls": WallSettings(range_pct=1.0, size_k=3.0, min_age_s=2.0, scan_interval_ms=1000),
        "absorption": AbsorptionSettings(window_s=30.0, frac=0.5),
        "exhaustion": ExhaustionSettings(window_s=2, lookback_s=6, volume_frac=0.5),
    }
    base.update(sections)
    return HeliosSettings(**base)  # type: ignore[arg-type]


class Feed:
    """Builds events with consecutive update ids and feeds them to an engine."""

    def __init__(self, engine: PairEngine | None = None, **sections: object) -> None:
        self.engine = engine or PairEngine(EX, SYM, settings(**sections))
        self.uid = 100
        self.events: list[Event] = []

    def send(self, ev: Event) -> None:
        self.events.append(ev)
        self.engine.on_event(ev)

    def snapshot(self, t: int, bids=BIDS, asks=ASKS, uid: int = 100) -> None:  # type: ignore[no-untyped-def]
        self.uid = uid
        self.send(BookSnapshot(EX, SYM, T0 + t, T0 + t, self.uid, tuple(bids), tuple(asks)))

    def delta(self, t: int, bids=(), asks=()) -> None:  # type: ignore[no-untyped-def]
        self.uid += 1
        self.send(BookDelta(EX, SYM, T0 + t, T0 + t, self.uid, self.uid, NO_ID, tuple(bids), tuple(asks)))

    def trade(self, t: int, price: float, amount: float, side: str) -> None:
        self.send(Trade(EX, SYM, T0 + t, T0 + t, price, amount, side, str(len(self.events))))  # type: ignore[arg-type]

    def tick(self, t: int) -> None:
        self.send(BestBidOffer(EX, SYM, T0 + t, T0 + t, NO_ID, 0.0, 0.0, 0.0, 0.0))


def _wall_confirmed(side: str, price: float, book_side: list[tuple[float, float]], **sections: object) -> Feed:
    """A 10.0 wall at ``price`` on ``side``, confirmed at T0+3s, then the four levels nearer the mid removed."""
    f = Feed(**sections)
    f.snapshot(0)
    f.delta(S // 2, **{side: [(price, 10.0)]})
    for s in (1, 2, 3):
        f.tick(s * S)
    f.delta(3 * S + 100_000, **{side: [(p, 0.0) for p, _ in book_side[:4]]})
    return f


def bid_wall_confirmed(**sections: object) -> Feed:
    """Bid wall 10.0 at 995.5 (bin [995, 996)) confirmed at T0+3s; bids above it removed (best bid 995.5,
    mid 998.0)."""
    return _wall_confirmed("bids", 995.5, BIDS, **sections)


def ask_wall_confirmed(**sections: object) -> Feed:
    """Ask wall 10.0 at 1004.5 (bin [1004, 1005)) confirmed at T0+3s; asks below it removed."""
    return _wall_confirmed("asks", 1004.5, ASKS, **sections)
