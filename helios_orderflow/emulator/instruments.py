"""Instrument metadata of the local exchange: tick sizes, lot sizes, notional limits, start prices.

Prices and quantities are carried as integers in fixed decimal units (``price_units``: 10**-price_decimals
of the quote currency, ``qty_units``: 10**-qty_decimals of the base currency), so the book the server keeps
and the strings it sends convert into each other exactly: ``float(format_price(n))`` is the same float
for the same ``n`` on both ends, and books rebuilt by a client compare exactly with the server's.

Spot symbols (``BTC/USDT``, wire ``BTCUSDT``) are formatted with 8 decimals like Binance spot; USD-M
futures (``BTC/USDT:USDT``) with the decimals of their tick like Binance's ``fapi``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.symbols import binance_wire

MarketType = Literal["spot", "linear"]

#: Start price, tick size, lot step, min notional (quote) and the model's price grid (in ticks) for
#: well-known bases; close to Binance's real filters (spot, then USD-M futures where they differ).
_KNOWN: dict[str, tuple[float, str, str, str, int]] = {
    # base: (start price, tick, step, min notional, grid ticks)
    "BTC": (60000.0, "0.01", "0.00001", "5", 30),
    "ETH": (3000.0, "0.01", "0.0001", "5", 2),
    "BNB": (550.0, "0.01", "0.001", "5", 1),
    "SOL": (150.0, "0.01", "0.001", "5", 1),
    "XRP": (0.55, "0.0001", "0.1", "5", 1),
    "DOGE": (0.12, "0.00001", "1", "5", 1),
    "ADA": (0.45, "0.0001", "0.1", "5", 1),
    "LTC": (70.0, "0.01", "0.001", "5", 1),
    "LINK": (13.0, "0.01", "0.01", "5", 1),
    "AVAX": (28.0, "0.01", "0.01", "5", 1),
}
_FUTURES: dict[str, tuple[str, str]] = {
    # base: (tick, step) on USD-M futures
    "BTC": ("0.10", "0.001"),
    "ETH": ("0.01", "0.001"),
    "BNB": ("0.010", "0.01"),
    "SOL": ("0.0100", "1"),
    "XRP": ("0.0001", "0.1"),
    "DOGE": ("0.000010", "1"),
    "ADA": ("0.00010", "1"),
    "LTC": ("0.01", "0.001"),
    "LINK": ("0.001", "0.01"),
    "AVAX": ("0.0010", "1"),
}


def _units(text: str, decimals: int) -> int:
    whole, _, frac = text.partition(".")
    frac = (frac + "0" * decimals)[:decimals]
    return int(whole) * 10**decimals + int(frac or 0)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable symbol as the local exchange lists it."""

    symbol: str  # ccxt unified: BTC/USDT or BTC/USDT:USDT
    wire: str  # BTCUSDT
    base: str
    quote: str
    market: MarketType
    tick: str  # "0.01"
    step: str  # "0.00001"
    min_notional: str
    price_decimals: int  # decimals carried in price_units (8 on spot, the tick's on futures)
    qty_decimals: int
    tick_units: int  # one tick in price_units
    step_units: int  # one lot step in qty_units
    start_price: float
    grid_ticks: int  # the synthetic model's price grid, in ticks

    @property
    def stream_id(self) -> str:
        """Lower-case wire symbol as used in stream names (``btcusdt``)."""
        return self.wire.lower()

    def format_price(self, price_units: int) -> str:
        d = self.price_decimals
        if d == 0:
            return str(price_units)
        whole, frac = divmod(price_units, 10**d)
        return f"{whole}.{frac:0{d}d}"

    def format_qty(self, qty_units: int) -> str:
        d = self.qty_decimals
        if d == 0:
            return str(qty_units)
        whole, frac = divmod(qty_units, 10**d)
        return f"{whole}.{frac:0{d}d}"

    def price(self, price_units: int) -> float:
        """The float a client gets by parsing ``format_price(price_units)``."""
        return float(self.format_price(price_units))

    def qty(self, qty_units: int) -> float:
        return float(self.format_qty(qty_units))

    def price_to_units(self, price: float) -> int:
        """Nearest price_units to ``price`` (rounded to the tick)."""
        ticks = round(price * 10**self.price_decimals / self.tick_units)
        return int(ticks) * self.tick_units

    def qty_to_units(self, qty: float) -> int:
        steps = round(qty * 10**self.qty_decimals / self.step_units)
        return int(steps) * self.step_units


def instrument(symbol: str) -> Instrument:
    """Metadata for a ccxt unified symbol (``BTC/USDT`` spot or ``BTC/USDT:USDT`` USD-M perpetual).

    Known bases get Binance-like filters; any other base gets a start price derived from its name and
    generic filters (tick 0.001 on a price of 1..100, step 0.01).
    """
    base, sep, rest = symbol.partition("/")
    quote, _, settle = rest.partition(":")
    if not sep or not base or not quote or not base.isalnum() or not quote.isalnum():
        raise HeliosError(f"symbol {symbol!r} is not a ccxt unified symbol; use e.g. BTC/USDT or BTC/USDT:USDT")
    if settle and settle != quote:
        raise HeliosError(
            f"symbol {symbol!r}: the local exchange lists spot (BTC/USDT) and USD-M perpetuals (BTC/USDT:USDT) only"
        )
    market: MarketType = "linear" if settle else "spot"
    if base in _KNOWN:
        start, tick, step, notional, grid = _KNOWN[base]
        if market == "linear":
            tick, step = _FUTURES[base]
            notional = "100" if base in ("BTC", "ETH") else "5"
            grid = max(1, round(grid * 0.01 / float(tick))) if base == "BTC" else grid
    else:
        # Deterministic per name, so the same symbol always lists the same way.
        h = zlib.crc32(base.encode())
        start = round(1.0 + (h % 9900) / 100.0, 2)
        tick, step, notional, grid = "0.001", "0.01", "5", 1
        if market == "linear":
            tick, step = "0.001", "0.1"
    price_decimals = 8 if market == "spot" else len(tick.partition(".")[2])
    qty_decimals = 8 if market == "spot" else len(step.partition(".")[2])
    return Instrument(
        symbol=symbol,
        wire=binance_wire(symbol),
        base=base,
        quote=quote,
        market=market,
        tick=tick,
        step=step,
        min_notional=notional,
        price_decimals=price_decimals,
        qty_decimals=qty_decimals,
        tick_units=_units(tick, price_decimals),
        step_units=_units(step, qty_decimals),
        start_price=start,
        grid_ticks=grid,
    )


def instrument_for_data(symbol: str, price_decimals: int, qty_decimals: int, start_price: float) -> Instrument:
    """Metadata for replaying recorded data: the listed filters when the data fits their tick and step,
    else a tick of ``10**-price_decimals`` and a step of ``10**-qty_decimals`` (the finest the data shows),
    so that no two recorded prices fall on one level."""
    from dataclasses import replace

    inst = instrument(symbol)
    tick_dec = len(inst.tick.partition(".")[2].rstrip("0"))
    step_dec = len(inst.step.partition(".")[2].rstrip("0"))
    changes: dict = {"start_price": start_price}
    if price_decimals > tick_dec:
        tick = f"{10.0 ** -price_decimals:.{price_decimals}f}"
        pd = max(inst.price_decimals, price_decimals)
        changes.update(tick=tick, price_decimals=pd, tick_units=10 ** (pd - price_decimals))
    if qty_decimals > step_dec:
        step = f"{10.0 ** -qty_decimals:.{qty_decimals}f}"
        qd = max(inst.qty_decimals, qty_decimals)
        changes.update(step=step, qty_decimals=qd, step_units=10 ** (qd - qty_decimals))
    return replace(inst, **changes)
