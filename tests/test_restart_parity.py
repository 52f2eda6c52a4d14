"""A restart keeps the session: the feed saves each pair's engine beside the recording (a checkpoint every
``recording.checkpoint_every_s`` of event time and at a clean stop); a restarted feed loads the newest one,
replays the events recorded after it, declares the time it was down as a gap, and goes on. Every candle it
publishes after the restart then equals ``compute_features`` over the whole recording, and the session's CVD
goes on instead of starting from zero. Real ccxt.pro client, local exchange, real Parquet recording."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from helios_orderflow.core.events import FeedGap
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.features.compute import candles_to_frame, compute_features
from helios_orderflow.live.feed import Feed
from helios_orderflow.recording.checkpoints import checkpoints, fingerprint
from helios_orderflow.recording.reader import read_events
from tests.waits import wait_for

pytestmark = pytest.mark.integration

PAIRS = ["BTC/USDT", "ETH/USDT"]
TF = "2s"


def test_a_restarted_feed_continues_the_session_and_equals_a_replay_of_the_whole_recording(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec = tmp_path / "rec"
    settings = HeliosSettings.from_dict({"recording": {"checkpoint_every_s": 6}})
    with start_in_thread(SyntheticSource(PAIRS, seed=11)) as exchange:
        first = Feed("binance", PAIRS, settings, ccxt_config=exchange.ccxt_config(), record_to=rec, timeframe=TF)
        first.start()
        try:
            wait_for(lambda: all(len(checkpoints(rec, "binance", s)) >= 2 for s in PAIRS),
                     120, "two checkpoints per pair")
            wait_for(lambda: all(len(first.state.history(s)) >= 8 for s in PAIRS), 120, "8 candles per pair")
        finally:
            first.stop()
            first.wait_recording(10)
        # BTC/USDT loses the checkpoint of the clean stop, as a killed bot would never write it: it restarts
        # from the one before and replays what was recorded after it; ETH/USDT restarts from the stop's
        for s in PAIRS:
            assert checkpoints(rec, "binance", s)[0].fingerprint == fingerprint(settings, TF)
        checkpoints(rec, "binance", "BTC/USDT")[0].path.unlink()
        stopped_candles = {s: len(first.state.history(s)) for s in PAIRS}

        second = Feed("binance", PAIRS, settings, ccxt_config=exchange.ccxt_config(), record_to=rec, timeframe=TF)
        with caplog.at_level(logging.INFO, logger="helios_orderflow.live.feed"):
            second.start()
        try:
            assert [r.getMessage().split(" (")[0] for r in caplog.records if "session" in r.getMessage()] == [
                "helios: BTC/USDT continues its recorded session", "helios: ETH/USDT continues its recorded session"]
            replayed = {s: int(r.getMessage().split(", ")[1].split(" recorded")[0])
                        for s, r in zip(PAIRS, [r for r in caplog.records if "continues" in r.getMessage()],
                                        strict=True)}
            wait_for(lambda: all(len(second.state.history(s)) >= stopped_candles[s] + 6 for s in PAIRS), 120,
                     "6 candles after the restart")
        finally:
            second.stop()
            second.wait_recording(10)
        live = {s: candles_to_frame(list(second.state.history(s))) for s in PAIRS}

    assert replayed["BTC/USDT"] > 0  # events recorded after its older checkpoint
    gaps = [ev for ev in read_events(rec) if isinstance(ev, FeedGap)]
    assert sorted(g.symbol for g in gaps) == PAIRS
    assert {g.reason for g in gaps} == {"restart: the session continues from the recording"}
    for s in PAIRS:
        offline = compute_features(rec, s, TF, settings, cache=False, include_partial=False)
        frame = live[s]
        after = frame[frame["date"] > pd.Timestamp(next(g.ts_us for g in gaps if g.symbol == s), unit="us", tz="UTC")]
        assert len(after) >= 5
        # every candle the restarted feed published (the ones before the restart came from the checkpoint):
        # equal, column for column, to the replay of the whole recording
        same = offline[offline["date"].isin(frame["date"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), same, check_exact=True)
        # the session goes on: the first candle after the restart has the session's CVD, not a fresh zero
        first_after = after.iloc[0]
        before = frame[frame["date"] < first_after["date"]].iloc[-1]
        assert first_after["cvd"] != 0
        if first_after["date"].date() == before["date"].date():  # same session (sessions start at 00:00 UTC)
            assert first_after["cvd"] == pytest.approx(before["cvd"] + first_after["delta"], abs=1e-9)
        assert len(frame) > len(after)  # the history before the restart is there too
