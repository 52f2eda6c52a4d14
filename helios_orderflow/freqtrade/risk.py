"""Risk: the stop behind the protecting wall, the 1-2 % risk fraction, and the position size.

- Stop: a long's stop sits ``max(one tick, stop_buffer_bps of the entry)`` below the protecting bid wall's
  far edge; a short's the same distance above the ask wall's. A stop that would not be strictly on the
  losing side of the entry (below it for a long, above for a short) is refused (None): no trade.
- Risk fraction: the configured fraction of equity, clamped to ``[min_risk_fraction, max_risk_fraction]``
  (default 1.5 % in [1 %, 2 %]).
- Size: ``amount = equity * risk / |entry - stop|`` (base units), so hitting the stop loses ``equity * risk``
  (before fees and slippage); the stake ``amount * entry`` is capped by the available stake (then the
  amount shrinks with it, and the loss at the stop is smaller than planned, never larger).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Literal

from helios_orderflow.core.settings import RiskSettings

Side = Literal["long", "short"]


def clamp_risk(fraction: float, settings: RiskSettings | None = None) -> float:
    s = settings or RiskSettings()
    if math.isnan(fraction):
        return s.min_risk_fraction
    return min(max(fraction, s.min_risk_fraction), s.max_risk_fraction)


def stop_behind_wall(side: Side, wall_price: float, entry_price: float, tick: float, buffer_bps: float) -> float | None:
    """The stop price behind a wall, or None when it would not be on the losing side of the entry."""
    if not (math.isfinite(wall_price) and math.isfinite(entry_price)) or entry_price <= 0:
        return None
    gap = max(tick if math.isfinite(tick) and tick > 0 else 0.0, entry_price * buffer_bps * 1e-4)
    if side == "long":
        stop = wall_price - gap
        return stop if 0 < stop < entry_price else None
    stop = wall_price + gap
    return stop if stop > entry_price else None


@dataclass(frozen=True, slots=True)
class PositionSize:
    #: Base-currency amount to buy or sell.
    amount: float
    #: Quote-currency stake = amount x entry, never above the available stake.
    stake: float
    #: Quote currency lost if the stop is hit (before fees and slippage).
    risk_amount: float
    #: True when the available stake, not the risk rule, set the size.
    capped: bool


def position_size(equity: float, risk_fraction: float, entry_price: float, stop_price: float,
                  available_stake: float, settings: RiskSettings | None = None) -> PositionSize:
    """Size by the risk rule (``risk_fraction`` is clamped), capped by ``available_stake`` (quote units).
    Any input that makes a size meaningless (non-positive equity, entry or stake; stop at the entry) gives 0."""
    risk = clamp_risk(risk_fraction, settings)
    distance = abs(entry_price - stop_price)
    if not (equity > 0 and entry_price > 0 and available_stake > 0 and distance > 0 and math.isfinite(distance)):
        return PositionSize(0.0, 0.0, 0.0, False)
    budget = equity * risk
    amount = budget / distance
    if not (budget >= sys.float_info.min and amount >= sys.float_info.min):
        # Subnormal floats keep too few bits for the risk rule to hold (amount x distance came out 1.3e-9 above
        # the budget at equity 2.2e-308), and no venue trades such an amount: no size.
        return PositionSize(0.0, 0.0, 0.0, False)
    stake = amount * entry_price
    capped = stake > available_stake
    if capped:
        amount = available_stake / entry_price
        while amount > 0 and amount * entry_price > available_stake:  # rounding must not lift it over the cap
            amount = math.nextafter(amount, 0.0)
        stake = amount * entry_price
    return PositionSize(amount, stake, amount * distance, capped)
