"""Candles of the local exchange: 1-minute candles built from published trades, other intervals
aggregated from them on request, plus a seeded back-filled history so indicators are warm at start.

Conventions (Binance's): a candle covers ``[open_ms, open_ms + interval)``, intervals align to the
Unix epoch (UTC midnight for ``1d``); a minute with no trade repeats the previous close with zero volume;
the last candle is the open one. Volumes are in the instrument's ``qty_units``.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from helios_orderflow.core.errors import HeliosError

if TYPE_CHECKING:
    from helios_orderflow.emulator.instruments import Instrument

MINUTE_MS = 60_000

#: Supported intervals in minutes (Binance names).
INTERVALS: dict[str, int] = {
    "1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360,
    "8h": 480, "12h": 720, "1d": 1440,
}

# One 1m candle: [open_ms, o, h, l, c, volume_units, quote_volume, n_trades, taker_buy_units,
#                 taker_buy_quote, first_trade_id, last_trade_id]
Candle = list


def interval_minutes(interval: str) -> int:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise HeliosError(f"interval {interval!r} is not served; use one of {', '.join(INTERVALS)}") from None


class CandleBook:
    """All 1m candles of one symbol, keyed by minute, gap-free from the first to the last."""

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self._scale = 10.0 ** -(inst.price_decimals + inst.qty_decimals)
        self.minutes: dict[int, Candle] = {}  # minute index (open_ms // 60000) -> candle
        self.first: int | None = None
        self.last: int | None = None

    # ---- building ------------------------------------------------------------------------------
    def _new(self, minute: int, price: int) -> Candle:
        return [minute * MINUTE_MS, price, price, price, price, 0, 0.0, 0, 0, 0.0, -1, -1]

    def ensure_until(self, ts_ms: int) -> None:
        """Fill minutes up to the one holding ``ts_ms`` with flat candles (no trades)."""
        minute = ts_ms // MINUTE_MS
        if self.last is None or minute <= self.last:
            return
        close = self.minutes[self.last][4]
        for m in range(self.last + 1, minute + 1):
            self.minutes[m] = self._new(m, close)
        self.last = minute

    def add_trade(self, ts_ms: int, price: int, qty: int, taker_buys: bool, trade_id: int = -1) -> None:
        minute = ts_ms // MINUTE_MS
        if self.last is None:
            self.first = self.last = minute
            self.minutes[minute] = self._new(minute, price)
        elif minute > self.last:
            self.ensure_until(ts_ms)
        elif minute < self.last:
            minute = self.last  # a late trade (replay seam) counts in the open candle
        c = self.minutes[minute]
        if c[7] == 0:
            c[1] = c[2] = c[3] = price
        else:
            if price > c[2]:
                c[2] = price
            if price < c[3]:
                c[3] = price
        c[4] = price
        c[5] += qty
        quote = price * qty * self._scale
        c[6] += quote
        c[7] += 1
        if taker_buys:
            c[8] += qty
            c[9] += quote

    def backfill(self, end_ms: int, minutes: int, seed: str, minute_qty_units: int, start_price_units: int) -> None:
        """Seeded history of ``minutes`` 1m candles ending just before ``end_ms``, whose last close is
        ``start_price_units`` (so the live market continues from it). A geometric random walk with
        regime-switching drift and volatility; volumes log-normal around ``minute_qty_units``."""
        if minutes <= 0:
            return
        rng = random.Random(f"backfill:{seed}")
        tick = self.inst.tick_units
        end_minute = end_ms // MINUTE_MS
        closes = [0.0] * minutes
        price = float(start_price_units)
        drift, vol, left = 0.0, 6e-4, 0
        for k in range(minutes - 1, -1, -1):
            closes[k] = price
            if left <= 0:
                left = int(rng.expovariate(1 / 90)) + 10
                drift = rng.choice((-1.0, 0.0, 0.0, 1.0)) * rng.uniform(1e-4, 4e-4)
                vol = rng.uniform(3e-4, 1.2e-3)
            left -= 1
            price = price * math.exp(-(drift + vol * rng.gauss(0.0, 1.0)))
        prev = price
        for k in range(minutes):
            minute = end_minute - minutes + k
            o = prev
            c = closes[k]
            wick = abs(rng.gauss(0.0, 1.0)) * 3e-4 * o
            h = max(o, c) + wick
            lo = min(o, c) - abs(rng.gauss(0.0, 1.0)) * 3e-4 * o
            ou, cu = round(o / tick) * tick, round(c / tick) * tick
            hu, lu = max(round(h / tick) * tick, ou, cu), max(min(round(lo / tick) * tick, ou, cu), tick)
            qty = max(self.inst.step_units, int(minute_qty_units * math.exp(rng.gauss(-0.3, 0.8))))
            qty -= qty % self.inst.step_units
            n = max(1, int(qty / max(1, minute_qty_units) * 150))
            buy = int(qty * rng.uniform(0.35, 0.65))
            buy -= buy % self.inst.step_units
            mid = (hu + lu) / 2 * self._scale
            self.minutes[minute] = [minute * MINUTE_MS, ou, hu, lu, cu, qty, qty * mid, n, buy, buy * mid, -1, -1]
            prev = c
        self.first = end_minute - minutes
        self.last = end_minute - 1

    # ---- reading -------------------------------------------------------------------------------
    def candle(self, interval_min: int, bucket: int) -> Candle | None:
        """The candle of ``interval_min`` minutes whose open is ``bucket * interval_min`` minutes."""
        if self.first is None or self.last is None:
            return None
        lo = max(bucket * interval_min, self.first)
        hi = min(bucket * interval_min + interval_min - 1, self.last)
        if lo > hi:
            return None
        out: Candle | None = None
        for m in range(lo, hi + 1):
            c = self.minutes[m]
            if out is None:
                out = list(c)
                out[0] = bucket * interval_min * MINUTE_MS
                continue
            if c[2] > out[2]:
                out[2] = c[2]
            if c[3] < out[3]:
                out[3] = c[3]
            out[4] = c[4]
            out[5] += c[5]
            out[6] += c[6]
            out[7] += c[7]
            out[8] += c[8]
            out[9] += c[9]
        return out

    def klines(self, interval: str, start_ms: int | None, end_ms: int | None, limit: int) -> list[Candle]:
        """Candles as Binance's ``/api/v3/klines`` selects them: from ``start_ms`` forward, else the last
        ``limit`` up to ``end_ms``, else the last ``limit`` including the open one."""
        m = interval_minutes(interval)
        if self.first is None or self.last is None:
            return []
        first_b = self.first // m
        last_b = self.last // m
        if end_ms is not None:
            last_b = min(last_b, (end_ms // MINUTE_MS) // m)
        if start_ms is not None:
            lo = max(first_b, -(-start_ms // (m * MINUTE_MS)))  # first open >= start_ms
            buckets = range(lo, min(last_b, lo + limit - 1) + 1)
        else:
            buckets = range(max(first_b, last_b - limit + 1), last_b + 1)
        out = []
        for b in buckets:
            c = self.candle(m, b)
            if c is not None:
                out.append(c)
        return out

    def to_wire(self, c: Candle, interval: str) -> list:
        """A candle in Binance's REST array shape."""
        i = self.inst
        close_ms = c[0] + interval_minutes(interval) * MINUTE_MS - 1
        return [c[0], i.format_price(c[1]), i.format_price(c[2]), i.format_price(c[3]), i.format_price(c[4]),
                i.format_qty(c[5]), f"{c[6]:.8f}", close_ms, c[7], i.format_qty(c[8]), f"{c[9]:.8f}", "0"]
