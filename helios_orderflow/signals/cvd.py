"""Cumulative volume delta: taker buy volume minus taker sell volume (base units).

``session`` restarts at each session anchor (UTC 00:00 by default); ``total`` runs since the engine started.
Per-candle delta lives in the candle accumulator (``candles.py``); their sum equals ``total``.
"""

from __future__ import annotations


class Cvd:
    __slots__ = ("total", "session", "session_start_us", "buy_volume", "sell_volume")

    def __init__(self, session_start_us: int = 0) -> None:
        self.total = 0.0
        self.session = 0.0
        self.session_start_us = session_start_us
        self.buy_volume = 0.0
        self.sell_volume = 0.0

    def add(self, amount: float, is_buy: bool) -> None:
        if is_buy:
            self.total += amount
            self.session += amount
            self.buy_volume += amount
        else:
            self.total -= amount
            self.session -= amount
            self.sell_volume += amount

    def new_session(self, start_us: int) -> None:
        self.session = 0.0
        self.session_start_us = start_us
