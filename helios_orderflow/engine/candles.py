"""Per-candle aggregation: timeframes, the OHLCV/flow accumulator of the open candle, and the closed
candle's feature record.

A candle with open time ``t`` and length ``tf`` covers the events the engine processes while its clock (the
largest event ``ts_us`` seen so far) is in ``[t, t + tf)``. It closes when the first event with
``ts_us >= t + tf`` arrives, before that event is applied, so a closed candle's values use only events with
``ts_us < t + tf`` (no look-ahead). A trade that arrives late (its own ``ts_us`` below the clock, e.g. a trade
stream lagging the depth stream by some milliseconds) counts in the candle open at the clock: every trade is
counted exactly once, so per-candle deltas always sum to the CVD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from helios_orderflow.core.timeframes import timeframe_us  # noqa: F401 (kept import path)

if TYPE_CHECKING:
    from helios_orderflow.signals.exhaustion import ExhaustionDetector
    from helios_orderflow.signals.walls import Wall, WallTracker

NAN = math.nan


@dataclass(frozen=True, slots=True)
class CandleFeatures:
    """One closed candle's features (units in docs/signals.md). NaN = not available (no trade yet, book
    out of sync or crossed at the close, no wall)."""

    open_time_us: int
    #: OHLC from trade prices (quote units); a candle without trades repeats the previous close.
    open: float
    high: float
    low: float
    close: float
    #: Traded base volume, trade count, taker buy/sell volume and delta = buy - sell (base units).
    volume: float
    trades: int
    buy_volume: float
    sell_volume: float
    delta: float
    #: CVD at the close: since the session anchor, and since the engine started (base units).
    cvd: float
    cvd_total: float
    #: Session VWAP at the close and its volume-weighted +/-1 and 2 standard deviation bands.
    vwap: float
    vwap_upper_1: float
    vwap_lower_1: float
    vwap_upper_2: float
    vwap_lower_2: float
    #: Order-flow imbalance summed over the candle's book updates: best level, and top-N levels (base units).
    ofi: float
    ofi_multi: float
    #: Book state at the close: depth imbalance within +/- X bps, queue imbalance at the best level (both in
    #: [-1, 1]), Stoikov's weighted mid, mid and spread (quote units).
    depth_imbalance: float
    queue_imbalance: float
    weighted_mid: float
    mid: float
    spread: float
    #: Nearest active bid/ask wall at the close: its far edge price and its resting size (base units).
    bid_wall_price: float
    bid_wall_size: float
    ask_wall_price: float
    ask_wall_size: float
    #: 1 when the signal fired during the candle, else 0.
    absorption_bull: int
    absorption_bear: int
    exhaustion_up: int
    exhaustion_down: int
    #: 1 when the book was in sync and not crossed at the close (book-based columns are valid), else 0.
    book_ok: int
    #: 1 when a usable book existed at some moment of the candle, else 0 (always 0 for a trades-only source,
    #: such as Freqtrade's downloaded trades: its book columns are NaN and book signals never fire).
    had_book: int = 0
    #: Volume profile of the session so far at the close (POC, value area high and low; quote units, NaN before
    #: the session's first trade), and of the whole previous session (NaN when it had no trades in the data).
    session_poc: float = NAN
    session_vah: float = NAN
    session_val: float = NAN
    prev_session_poc: float = NAN
    prev_session_vah: float = NAN
    prev_session_val: float = NAN
    #: The measurements the signals compare with their thresholds, so that a strategy can search stricter
    #: thresholds without recomputing features (docs/signals.md, "Measurements behind the signals").
    #: Largest fraction of a wall's peak size absorbed by the absorptions that fired in the candle (0.0: none).
    absorption_bull_frac: float = 0.0
    absorption_bear_frac: float = 0.0
    #: Smallest recent / prior-average taker volume ratio of the exhaustions that fired in the candle (NaN: none).
    exhaustion_up_volume_ratio: float = NAN
    exhaustion_down_volume_ratio: float = NAN
    #: Nearest active wall per side at the close: its size over the median bin size, and its age, both at the
    #: last scan (seconds since first seen as a candidate); NaN = no wall.
    bid_wall_size_k: float = NAN
    ask_wall_size_k: float = NAN
    bid_wall_age_s: float = NAN
    ask_wall_age_s: float = NAN


CANDLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CandleFeatures))


def signal_measures(walls: WallTracker | None, exhaustion: ExhaustionDetector, bid_wall: Wall | None,
                    ask_wall: Wall | None) -> dict[str, float]:
    """The open candle's measurement fields of ``CandleFeatures`` (keyword arguments): absorption and
    exhaustion from their detectors (reset by their ``new_candle`` at each close), the walls' from the nearest
    ``bid_wall`` / ``ask_wall`` at the close (None: none, or the book is not usable)."""
    bid_k, bid_age = walls.wall_measures(bid_wall) if walls is not None else (NAN, NAN)
    ask_k, ask_age = walls.wall_measures(ask_wall) if walls is not None else (NAN, NAN)
    return {
        "absorption_bull_frac": walls.bull_frac if walls is not None else 0.0,
        "absorption_bear_frac": walls.bear_frac if walls is not None else 0.0,
        "exhaustion_up_volume_ratio": exhaustion.up_volume_ratio,
        "exhaustion_down_volume_ratio": exhaustion.down_volume_ratio,
        "bid_wall_size_k": bid_k, "ask_wall_size_k": ask_k, "bid_wall_age_s": bid_age, "ask_wall_age_s": ask_age,
    }


class CandleAccumulator:
    """The open candle's trade and OFI sums; reset at each close."""

    __slots__ = (
        "open_time_us", "open", "high", "low", "close", "volume", "trades", "buy_volume", "sell_volume",
        "ofi", "ofi_multi", "absorption_bull", "absorption_bear", "exhaustion_up", "exhaustion_down", "had_book",
    )

    def __init__(self, open_time_us: int, last_close: float) -> None:
        self.reset(open_time_us, last_close)

    def reset(self, open_time_us: int, last_close: float) -> None:
        self.open_time_us = open_time_us
        self.open = self.high = self.low = self.close = last_close
        self.volume = 0.0
        self.trades = 0
        self.buy_volume = 0.0
        self.sell_volume = 0.0
        self.ofi = 0.0
        self.ofi_multi = 0.0
        self.absorption_bull = 0
        self.absorption_bear = 0
        self.exhaustion_up = 0
        self.exhaustion_down = 0
        self.had_book = 0

    def add_trade(self, price: float, amount: float, is_buy: bool) -> None:
        if self.trades == 0:
            self.open = self.high = self.low = price
        elif price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.volume += amount
        self.trades += 1
        if is_buy:
            self.buy_volume += amount
        else:
            self.sell_volume += amount
