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
import re
from dataclasses import dataclass, fields

from helios_orderflow.core.errors import HeliosError

_TF = re.compile(r"^(\d+)([smhdw])$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}

NAN = math.nan


def timeframe_us(timeframe: str) -> int:
    """Freqtrade-style timeframe (``30s``, ``1m``, ``5m``, ``1h``, ``1d``, ``1w``) in microseconds."""
    m = _TF.match(timeframe.strip())
    if not m or int(m.group(1)) <= 0:
        raise HeliosError(f"timeframe {timeframe!r} is not like 1m, 5m, 1h or 1d")
    return int(m.group(1)) * _UNIT_US[m.group(2)]


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


CANDLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CandleFeatures))


class CandleAccumulator:
    """The open candle's trade and OFI sums; reset at each close."""

    __slots__ = (
        "open_time_us", "open", "high", "low", "close", "volume", "trades", "buy_volume", "sell_volume",
        "ofi", "ofi_multi", "absorption_bull", "absorption_bear", "exhaustion_up", "exhaustion_down",
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
