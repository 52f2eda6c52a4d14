"""CVD: per-trade sums, session reset at the UTC anchor, and on the real stream the checked figure."""

from __future__ import annotations

import _btcusdt
import pytest
from _scenario import T0, Feed, S

from helios_orderflow.core.settings import FlowSettings
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.signals.cvd import Cvd


def test_cvd_is_taker_buys_minus_taker_sells() -> None:
    c = Cvd()
    c.add(2.0, True)
    c.add(0.5, False)
    assert (c.total, c.session, c.buy_volume, c.sell_volume) == (1.5, 1.5, 2.0, 0.5)
    c.new_session(123)
    c.add(1.0, False)
    assert (c.total, c.session, c.session_start_us) == (0.5, -1.0, 123)


def test_session_cvd_restarts_at_the_anchor_and_total_does_not() -> None:
    # T0 is 22:13:00 UTC; an anchor at 22:14 starts a new session 60 s in.
    f = Feed(flow=FlowSettings(session_anchor_utc="22:14"))
    f.trade(0, 100.0, 2.0, "buy")
    assert f.engine.snapshot().session_start_us == T0 - 23 * 3600 * S - 59 * 60 * S
    f.trade(60 * S, 100.0, 0.5, "sell")
    st = f.engine.snapshot()
    assert (st.cvd, st.cvd_total, st.session_start_us) == (-0.5, 1.5, T0 + 60 * S)
    assert f.engine.last_candle is not None and f.engine.last_candle.cvd == 2.0  # closed before the reset


def test_real_stream_cvd_and_candle_deltas_sum_to_the_checked_figure() -> None:
    rows = []
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, on_candle=rows.append)
    for ev in _btcusdt.events():
        engine.on_event(ev)
    st = engine.snapshot()
    open_delta = st.delta_candle  # the candle still open at the end
    assert st.cvd_total == pytest.approx(_btcusdt.CVD, abs=1e-6)
    assert sum(r.delta for r in rows) + open_delta == pytest.approx(_btcusdt.CVD, abs=1e-6)
    assert rows[-1].cvd_total == pytest.approx(sum(r.delta for r in rows), abs=1e-9)
    assert engine.cvd.buy_volume == pytest.approx(204.49112, abs=1e-6)
    assert engine.cvd.sell_volume == pytest.approx(233.4244, abs=1e-6)
    assert sum(r.trades for r in rows) + engine.candle.trades == _btcusdt.TRADES
