"""Candles: timeframes, closing before the first event at or past the close (no look-ahead), late trades,
empty candles."""

from __future__ import annotations

import math

import pytest
from _scenario import T0, Feed, S

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.engine.candles import timeframe_us
from helios_orderflow.engine.pair_engine import PairEngine


def test_timeframes() -> None:
    assert timeframe_us("1m") == 60 * S and timeframe_us("5m") == 300 * S and timeframe_us("1h") == 3600 * S
    assert timeframe_us("30s") == 30 * S and timeframe_us("1d") == 86400 * S
    for bad in ("1x", "m", "0m", ""):
        with pytest.raises(HeliosError):
            timeframe_us(bad)


def test_a_candle_closes_before_the_first_event_at_its_close_is_applied() -> None:
    f = Feed()
    f.trade(0, 100.0, 1.0, "buy")
    f.trade(30 * S, 102.0, 2.0, "sell")
    f.trade(60 * S - 1, 101.0, 0.5, "buy")
    assert f.engine.candles_closed == 0
    f.trade(60 * S, 200.0, 9.0, "buy")  # exactly at the close: belongs to the next candle
    c = f.engine.last_candle
    assert c is not None and c.open_time_us == T0
    assert (c.open, c.high, c.low, c.close, c.volume, c.trades) == (100.0, 102.0, 100.0, 101.0, 3.5, 3)
    assert (c.buy_volume, c.sell_volume, c.delta) == (1.5, 2.0, -0.5)
    assert f.engine.snapshot().delta_candle == 9.0


def test_a_late_trade_counts_in_the_candle_open_at_the_clock() -> None:
    f = Feed()
    f.trade(0, 100.0, 1.0, "buy")
    f.tick(60 * S + 50_000)  # clock passes the close: candle T0 closes
    f.trade(60 * S - 20_000, 99.0, 1.0, "sell")  # stamped before the close, arrives after it
    f.tick(120 * S)
    first, second = f.engine.history
    assert (first.volume, second.volume, second.open, second.delta) == (1.0, 1.0, 99.0, -1.0)


def test_empty_candles_repeat_the_last_close_with_zero_volume() -> None:
    f = Feed()
    f.trade(0, 100.0, 1.0, "buy")
    f.trade(3 * 60 * S + 1, 101.0, 1.0, "buy")
    rows = list(f.engine.history)
    assert [r.open_time_us for r in rows] == [T0, T0 + 60 * S, T0 + 120 * S]
    assert [(r.open, r.close, r.volume, r.trades) for r in rows[1:]] == [(100.0, 100.0, 0.0, 0)] * 2
    assert math.isnan(rows[0].mid)  # no book: book columns are NaN, book_ok 0
    assert rows[0].book_ok == 0


def test_history_is_bounded() -> None:
    from helios_orderflow.core.settings import FlowSettings, HeliosSettings

    e = PairEngine("binance", "BTC/USDT", HeliosSettings(flow=FlowSettings(candle_history=5)), timeframe="1s")
    f = Feed(e)
    for k in range(30):
        f.trade(k * S, 100.0, 1.0, "buy")
    assert len(e.history) == 5 and e.candles_closed == 29
