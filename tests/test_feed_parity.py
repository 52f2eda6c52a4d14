"""Parity by construction: the per-candle features SharedState published live equal, exactly, the features
``compute_features`` (what ``helios features`` and backtesting run) computes from the recording the same
session wrote. The feed hands the engine and the recorder the same events in the same order, and the
engine is a pure function of its events.

Against the local exchange (synthetic market) with the real ccxt.pro binance client; the long test also
injects gaps and disconnects, so declared gaps and resyncs are part of what must agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator import SyntheticSource, parse_faults, start_in_thread
from helios_orderflow.features.compute import FEATURE_COLUMNS, candles_to_frame, compute_features
from helios_orderflow.live.feed import Feed

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def _run_session(tmp_path: Path, timeframe: str, faults: str | None, done: Callable[[Feed], bool],
                 timeout_s: float) -> tuple[Feed, Path]:
    """Run the feed against the local exchange until ``done(feed)`` holds (polled; a busy machine only makes
    it take longer), failing after ``timeout_s``."""
    exchange = start_in_thread(SyntheticSource(SYMBOLS, seed=21), faults=parse_faults(faults))
    rec = tmp_path / "rec"
    settings = HeliosSettings.from_dict({"feed": {"backoff_max_s": 1.0}})
    feed = Feed("binance", SYMBOLS, settings, ccxt_config=exchange.ccxt_config(), record_to=rec, timeframe=timeframe)
    try:
        feed.start()
        deadline = time.monotonic() + timeout_s
        while not done(feed):
            assert time.monotonic() < deadline, f"the session did not get there within {timeout_s:.0f} s"
            time.sleep(0.5)
    finally:
        feed.stop()
        exchange.stop()
    return feed, rec


def _assert_parity(feed: Feed, rec: Path, timeframe: str, min_candles: int) -> int:
    compared = 0
    for symbol in SYMBOLS:
        snap = feed.state.get(symbol)
        live = candles_to_frame(list(snap.history))
        assert len(live) >= min_candles, f"{symbol}: only {len(live)} candles closed live"
        assert snap.engine.candle == snap.history[-1] and snap.engine.candles_closed == len(snap.history)
        offline = compute_features(rec, symbol, timeframe, cache=False, include_partial=False)
        # Same candles, same order, every column bit for bit (NaN where either is NaN).
        assert list(offline["date"]) == list(live["date"]), symbol
        pd.testing.assert_frame_equal(live, offline, check_exact=True)
        assert list(live.columns) == list(FEATURE_COLUMNS)
        # the comparison is not vacuous: trades, book features and CVD moved
        assert (live["trades"] > 0).sum() >= min_candles - 1
        assert np.isfinite(live["mid"]).sum() >= min_candles - 1
        assert live["cvd_total"].iloc[-1] != 0.0
        compared += len(live)
    return compared


@pytest.mark.slow
def test_live_candle_features_equal_the_recordings_features_over_5_minutes_with_gaps_and_disconnects(
    tmp_path: Path,
):
    def enough(feed: Feed) -> bool:
        """Five candles closed on every pair, and every pair through a gap and two disconnects."""
        snaps = [feed.state.get(s) for s in SYMBOLS]
        return all(x.engine is not None and x.engine.candles_closed >= 5 and x.health.gaps >= 1
                   and x.health.reconnects >= 2 for x in snaps)

    feed, rec = _run_session(tmp_path, "1m", "gap=1/700,disconnect=100,after=20,seed=4", enough, timeout_s=800)
    h = {s: feed.state.get(s).health for s in SYMBOLS}
    assert all(x.gaps >= 1 and x.reconnects >= 2 for x in h.values()), h  # the faults did happen
    assert _assert_parity(feed, rec, "1m", min_candles=4) >= 12
