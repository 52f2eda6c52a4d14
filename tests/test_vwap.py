"""VWAP and its bands: by hand, and on the real stream against sum(p*q)/sum(q) of the session's trades."""

from __future__ import annotations

import math

import _btcusdt
import pytest

from helios_orderflow.core.events import Trade
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.signals.vwap import SessionVwap


def test_vwap_and_bands_by_hand() -> None:
    v = SessionVwap()
    assert math.isnan(v.vwap)
    v.add(100.0, 1.0)
    v.add(110.0, 3.0)
    # vwap = (100 + 330) / 4 = 107.5; variance = (1 x 7.5^2 + 3 x 2.5^2) / 4 = 18.75
    sd = math.sqrt(18.75)
    assert v.vwap == pytest.approx(107.5, abs=1e-12)
    assert v.bands() == pytest.approx((107.5, 107.5 + sd, 107.5 - sd, 107.5 + 2 * sd, 107.5 - 2 * sd))
    v.reset()
    assert math.isnan(v.vwap)


def _vwap(trades: list[tuple[float, float]]) -> float:
    return sum(p * q for p, q in trades) / sum(q for _, q in trades)


def test_real_stream_vwap_equals_the_session_trades_vwap_at_every_candle() -> None:
    rows = []
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, on_candle=rows.append)
    midnight = 1723161600_000_000  # 2024-08-09T00:00Z, inside the stream: the session restarts there
    clock = -1
    session: list[tuple[float, float]] = []  # trades of the session, as the engine's clock attributes them
    checked = 0
    for ev in _btcusdt.events():
        closed = engine.candles_closed
        reset = clock < midnight <= ev.ts_us
        clock = max(clock, ev.ts_us)
        engine.on_event(ev)
        if engine.candles_closed > closed:  # closed before this event was applied, and before the reset
            assert rows[-1].vwap == pytest.approx(_vwap(session), rel=1e-12)  # this event not yet appended
            checked += 1
        if reset:
            session = []
        if type(ev) is Trade:
            session.append((ev.price, ev.amount))
    assert checked == len(rows) == 11
    assert engine.snapshot().vwap == pytest.approx(_vwap(session), rel=1e-12)
    # no trade straddles midnight late, so this is also every trade stamped from midnight on
    assert session == [(e.price, e.amount) for e in _btcusdt.trades() if e.ts_us >= midnight]
