"""Kept import path: ``from helios_orderflow.strategy import HeliosStrategy`` (the class lives in
``helios_orderflow.freqtrade.strategy``)."""

from helios_orderflow.freqtrade.strategy import HeliosStrategy

__all__ = ["HeliosStrategy"]
