"""The decision layer: engine state + TA (TA-Lib RSI on the candle frame) -> STRONG_BUY / STRONG_SELL / HOLD,
with a LIMIT entry, a stop behind the nearest protecting wall, and the risk fraction.

Rules (defaults in ``DecisionSettings``/``RiskSettings``):
- Fail closed: a book that is not usable (out of sync, crossed, one-sided) gives HOLD.
- STRONG_BUY: the latest absorption signal is bullish, at most ``signal_max_age_s`` old (event time), its bid
  wall is still active, and RSI(``rsi_period``) of the candle closes is below ``rsi_buy_below``. Entry: a
  LIMIT at the best bid (joins the bid, never crosses the book). Stop: behind the nearest active bid wall
  below the entry (``risk.stop_behind_wall``).
- STRONG_SELL (when ``allow_short``): mirrored: bearish absorption at a still active ask wall, RSI above
  ``rsi_sell_above``, LIMIT at the best ask, stop above the nearest ask wall above the entry.
- Otherwise HOLD. ``reasons`` names what held or what was missing, e.g. ``("absorption_bull", "rsi_oversold",
  "stop_behind_bid_wall")`` or ``("no_absorption",)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import talib

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.pair_engine import PairState
from helios_orderflow.freqtrade.risk import PositionSize, Side, clamp_risk, position_size, stop_behind_wall

Action = Literal["STRONG_BUY", "STRONG_SELL", "HOLD"]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: "long" for STRONG_BUY, "short" for STRONG_SELL, None for HOLD.
    side: Side | None
    #: Always a LIMIT order; entry and stop are None for HOLD (quote units).
    order_type: Literal["limit"]
    entry_price: float | None
    stop_price: float | None
    #: The protecting wall's far edge the stop sits behind.
    wall_price: float | None
    #: Fraction of equity at risk, clamped to [min_risk_fraction, max_risk_fraction].
    risk_fraction: float
    reasons: tuple[str, ...]
    ts_us: int
    rsi: float

    def size(self, equity: float, available_stake: float, settings: HeliosSettings | None = None) -> PositionSize:
        """Position size by the risk rule; zero for HOLD."""
        if self.entry_price is None or self.stop_price is None:
            return PositionSize(0.0, 0.0, 0.0, False)
        s = settings or HeliosSettings()
        return position_size(equity, self.risk_fraction, self.entry_price, self.stop_price, available_stake, s.risk)


def rsi_last(close: np.ndarray | list[float], period: int = 14) -> float:
    """TA-Lib RSI of the closes, last value (NaN with fewer than ``period + 1`` closes)."""
    arr = np.asarray(close, dtype=np.float64)
    if arr.size <= period:
        return math.nan
    return float(talib.RSI(arr, timeperiod=period)[-1])


def decide(state: PairState, rsi: float, settings: HeliosSettings | None = None) -> Decision:
    """The decision for ``state`` given the current RSI (see the module docstring)."""
    s = settings or HeliosSettings()
    d = s.decision
    risk = clamp_risk(s.risk.risk_fraction, s.risk)

    def hold(*reasons: str) -> Decision:
        return Decision("HOLD", None, "limit", None, None, None, risk, reasons, state.ts_us, rsi)

    if not state.health.book_ok or state.best_bid is None or state.best_ask is None:
        return hold("book_unhealthy")
    sig = state.absorption
    if sig is None or state.ts_us - sig.ts_us > d.signal_max_age_s * 1_000_000:
        return hold("no_absorption")
    if math.isnan(rsi):
        return hold("rsi_unavailable")
    if sig.direction == "bull":
        if not any(w.side == "bid" and w.price == sig.wall_price for w in state.walls):
            return hold("absorption_bull", "wall_gone")
        if not rsi < d.rsi_buy_below:
            return hold("absorption_bull", "rsi_not_oversold")
        entry = state.best_bid
        walls = [w for w in state.walls if w.side == "bid" and w.price < entry]
        if not walls:
            return hold("absorption_bull", "rsi_oversold", "no_protecting_wall")
        wall = max(walls, key=lambda w: w.price)
        stop = stop_behind_wall("long", wall.price, entry, state.tick_size, s.risk.stop_buffer_bps)
        if stop is None:
            return hold("absorption_bull", "rsi_oversold", "no_valid_stop")
        return Decision("STRONG_BUY", "long", "limit", entry, stop, wall.price, risk,
                        ("absorption_bull", "rsi_oversold", "stop_behind_bid_wall"), state.ts_us, rsi)
    if not d.allow_short:
        return hold("absorption_bear", "shorts_disabled")
    if not any(w.side == "ask" and w.price == sig.wall_price for w in state.walls):
        return hold("absorption_bear", "wall_gone")
    if not rsi > d.rsi_sell_above:
        return hold("absorption_bear", "rsi_not_overbought")
    entry = state.best_ask
    walls = [w for w in state.walls if w.side == "ask" and w.price > entry]
    if not walls:
        return hold("absorption_bear", "rsi_overbought", "no_protecting_wall")
    wall = min(walls, key=lambda w: w.price)
    stop = stop_behind_wall("short", wall.price, entry, state.tick_size, s.risk.stop_buffer_bps)
    if stop is None:
        return hold("absorption_bear", "rsi_overbought", "no_valid_stop")
    return Decision("STRONG_SELL", "short", "limit", entry, stop, wall.price, risk,
                    ("absorption_bear", "rsi_overbought", "stop_above_ask_wall"), state.ts_us, rsi)


def decide_from_candles(state: PairState, close: np.ndarray | list[float],
                        settings: HeliosSettings | None = None) -> Decision:
    """``decide`` with the RSI computed from the candle closes (e.g. ``dataframe["close"]``)."""
    s = settings or HeliosSettings()
    return decide(state, rsi_last(close, s.decision.rsi_period), s)
