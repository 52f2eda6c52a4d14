"""Absorption: aggressive (taker) volume traded into a wall, within a time window, reaching a fraction of the
wall's size while the wall holds.

For a bid wall occupying price bin ``[low, high)`` (see ``walls.py``):
- volume *into* the wall = taker-sell volume printed at prices in ``[low, high)``;
- the wall *holds* while no taker sell prints below ``low - bin_size`` (price does not move beyond it by more
  than one bin); a print beyond that empties the window (the count starts again if the wall survives);
- **bullish absorption** fires when the volume into the wall over the last ``window_s`` seconds (event time)
  reaches ``frac`` x the wall's peak size. It fires once, and re-arms when the windowed volume falls back
  below the threshold.
An ask wall is the mirror image (taker buys into ``[low, high)``, broken above ``high + bin_size``):
**bearish absorption**.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class AbsorptionSignal:
    ts_us: int
    #: "bull" at a bid wall (sellers absorbed), "bear" at an ask wall (buyers absorbed).
    direction: Literal["bull", "bear"]
    #: The wall's far edge (bid: bin low, ask: bin high) and its bin, quote units.
    wall_price: float
    wall_low: float
    wall_high: float
    #: The wall's resting size at its last scan and its peak, base units.
    wall_size: float
    wall_peak_size: float
    #: Taker volume into the wall over the window when it fired, base units.
    absorbed_volume: float
    window_s: float


class AbsorptionWindow:
    """Taker volume into one wall over a sliding event-time window."""

    __slots__ = ("window_us", "trades", "volume", "fired")

    def __init__(self, window_s: float) -> None:
        self.window_us = int(window_s * 1_000_000)
        self.trades: deque[tuple[int, float]] = deque()
        self.volume = 0.0
        self.fired = False

    def reset(self) -> None:
        self.trades.clear()
        self.volume = 0.0
        self.fired = False

    def add(self, ts_us: int, amount: float, threshold: float) -> bool:
        """Count a trade into the wall; True when this trade makes the windowed volume reach ``threshold``
        (edge-triggered: once until the volume drops below it again)."""
        trades = self.trades
        trades.append((ts_us, amount))
        self.volume += amount
        cutoff = ts_us - self.window_us
        while trades and trades[0][0] <= cutoff:
            self.volume -= trades.popleft()[1]
        if not trades:
            self.volume = 0.0
        if self.volume >= threshold * (1 - 1e-12):
            if not self.fired:
                self.fired = True
                return True
        else:
            self.fired = False
        return False
