"""What a ``PairEngine`` hands out: its immutable ``PairState`` snapshot (with the engine's ``BookHealth``).
Plain frozen data, safe to share between threads (units in docs/signals.md)."""

from __future__ import annotations

from dataclasses import dataclass

from helios_orderflow.engine.candles import CandleFeatures
from helios_orderflow.signals.absorption import AbsorptionSignal
from helios_orderflow.signals.exhaustion import ExhaustionSignal
from helios_orderflow.signals.heatmap import HeatmapColumns
from helios_orderflow.signals.walls import Wall


@dataclass(frozen=True, slots=True)
class BookHealth:
    """Book and feed health counters (all since the engine started)."""

    in_sync: bool
    #: Book usable for signals: in sync, both sides present, not crossed.
    book_ok: bool
    snapshots: int
    applied: int
    stale_dropped: int
    gaps: int
    buffer_overflows: int
    #: FeedGap events received (the feed declared lost data; the book waits for a snapshot).
    feed_gaps: int
    #: Book messages after which the book was crossed (best bid >= best ask).
    crossed: int
    last_gap: str
    #: ``ts_us`` of the last applied book message (-1 before any).
    last_book_ts_us: int
    #: Trades not counted because the venue delivered them already (an id not above the last one counted,
    #: on a venue whose trade ids increase: ``trade_ids.py``). Live, the feed drops them first.
    duplicate_trades: int = 0


@dataclass(frozen=True, slots=True)
class PairState:
    """An immutable snapshot of one pair's engine (units in docs/signals.md). Book-based fields are None
    (or NaN) when ``health.book_ok`` is false."""

    exchange: str
    symbol: str
    #: The engine clock: largest event ``ts_us`` processed (-1 before any event).
    ts_us: int
    events: int
    timeframe: str
    tick_size: float
    bin_size: float
    best_bid: float | None
    best_bid_size: float | None
    best_ask: float | None
    best_ask_size: float | None
    mid: float | None
    spread: float | None
    last_price: float | None
    #: CVD since the session anchor and since start; delta of the open candle so far (base units).
    cvd: float
    cvd_total: float
    session_start_us: int
    delta_candle: float
    vwap: float
    vwap_std: float
    vwap_upper_1: float
    vwap_lower_1: float
    vwap_upper_2: float
    vwap_lower_2: float
    #: OFI of the last book message, summed over the open candle, and since start (base units).
    ofi_last: float
    ofi_candle: float
    ofi_multi_candle: float
    ofi_total: float
    ofi_multi_total: float
    #: Depth imbalance at the last wall scan, queue imbalance and weighted mid now.
    depth_imbalance: float
    queue_imbalance: float
    weighted_mid: float
    #: Active (confirmed) walls, nearest to the mid first per side; recently ended walls, oldest first.
    walls: tuple[Wall, ...]
    walls_ended: tuple[Wall, ...]
    absorption: AbsorptionSignal | None
    exhaustion: ExhaustionSignal | None
    absorptions: int
    exhaustions: int
    health: BookHealth
    #: The newest heatmap columns (None when the heatmap is off or has no column yet); ``heatmap.since(n)``
    #: reads every column after ``n`` up to this state's from the engine's ring, from any thread.
    heatmap: HeatmapColumns | None
    #: The last closed candle and how many candles have closed.
    candle: CandleFeatures | None
    candles_closed: int

    def nearest_wall(self, side: str) -> Wall | None:
        """The active ``"bid"`` or ``"ask"`` wall nearest to the mid."""
        for w in self.walls:
            if w.side == side:
                return w
        return None
