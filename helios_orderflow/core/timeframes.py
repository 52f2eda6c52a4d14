"""Freqtrade-style timeframes (``30s``, ``1m``, ``5m``, ``1h``, ``1d``, ``1w``): one parser for every layer."""

from __future__ import annotations

import re

from helios_orderflow.core.errors import HeliosError

_TF = re.compile(r"^(\d+)([smhdw])$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}


def timeframe_us(timeframe: str) -> int:
    """Freqtrade-style timeframe (``30s``, ``1m``, ``5m``, ``1h``, ``1d``, ``1w``) in microseconds."""
    m = _TF.match(timeframe.strip())
    if not m or int(m.group(1)) <= 0:
        raise HeliosError(f"timeframe {timeframe!r} is not like 1m, 5m, 1h or 1d")
    return int(m.group(1)) * _UNIT_US[m.group(2)]
