"""The venue dialects of the local exchange: one module per venue, each only translating the shared market
into that venue's public REST and websocket protocol (``base.Dialect``; each module names its class
``DIALECT``).

``dialect_class(venue)`` looks one up by its ``--venue`` name (the venue's ccxt id); ``VENUES`` lists them.
"""

from __future__ import annotations

import importlib

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.emulator.dialects.base import Dialect

#: ``helios exchange --venue`` choices (ccxt ids), default first; each is the module of that name here
VENUES: tuple[str, ...] = ("binance", "bybit", "okx", "gate", "kucoin")


def dialect_class(venue: str) -> type[Dialect]:
    """The dialect serving ``venue`` (a ccxt id such as ``okx``)."""
    if venue not in VENUES:
        raise ConfigError(f"the local exchange does not speak {venue!r}; --venue is one of {', '.join(VENUES)}")
    cls: type[Dialect] = importlib.import_module(f"helios_orderflow.emulator.dialects.{venue}").DIALECT
    return cls


__all__ = ["VENUES", "Dialect", "dialect_class"]
