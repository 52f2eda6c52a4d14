"""The feed follows the whitelist: a pair that joins gets its book and trades, a pair that leaves has its book
unsubscribed and its state dropped, and no other pair is disturbed (no resync, no gap, its book still the
exchange's). A pair that comes back rejoins the multi-symbol trades subscription it never left (no second
subscription, no trade twice). Real ccxt.pro clients against the local exchange (Binance and OKX dialects)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.events import BookDelta, BookSnapshot, FeedGap, Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.features.compute import candles_to_frame, compute_features
from helios_orderflow.live.feed import Feed
from helios_orderflow.live.warmup import warm_engine
from helios_orderflow.recording.checkpoints import checkpoints
from helios_orderflow.recording.reader import read_events
from tests.waits import wait_for

pytestmark = pytest.mark.integration

STAYS, LEAVES, JOINS = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def _subscribed(exchange: Any) -> set[str]:
    """Topics with at least one subscriber on the server now."""
    return exchange.call(lambda: {t for (_m, t), conns in exchange.server.hub.subs.items() if conns})


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_a_pair_joins_and_one_leaves_without_disturbing_the_pair_that_stays(venue: str, tmp_path: Path) -> None:
    symbols = [STAYS, LEAVES, JOINS]
    with start_in_thread(SyntheticSource(symbols, seed=11), record=True, record_depth=100,
                         record_history=100_000, venue=venue) as exchange:
        feed = Feed(venue, [STAYS, LEAVES], ccxt_config=exchange.ccxt_config(), record_to=tmp_path / "rec")
        feed.start()
        try:
            state = feed.state
            wait_for(lambda: all(state.is_healthy(s) and state.get(s).health.trades > 0 for s in (STAYS, LEAVES)), 60,
                     "both pairs healthy with trades")
            before_topics = _subscribed(exchange)
            leaves_book = {t for t in before_topics if _names(t, LEAVES) and ("depth" in t or t.startswith("books"))}
            assert len(leaves_book) == 1, before_topics
            stays_before = state.get(STAYS).health
            events_before = stays_before.book_updates

            before_leaving = {c.path.name for c in checkpoints(tmp_path / "rec", venue, LEAVES)}
            left_us = time.time_ns() // 1000
            joined, left = feed.set_pairs([STAYS, JOINS])
            assert (joined, left) == ((JOINS,), (LEAVES,))
            assert feed.symbols == (STAYS, JOINS)
            wait_for(lambda: state.get(JOINS) is not None and state.is_healthy(JOINS)
                     and state.get(JOINS).health.trades > 0, 60, "the pair that joined healthy with trades")
            wait_for(lambda: state.get(LEAVES) is None, 60, "the pair that left dropped from the state")
            wait_for(lambda: not (_subscribed(exchange) & leaves_book),
                     60, "the book of the pair that left unsubscribed")
            wait_for(lambda: state.get(STAYS).health.book_updates > events_before + 20,
                     60, "the pair that stays going on")
            assert state.symbols == (STAYS, JOINS)
            assert state.problems(LEAVES) and "not fed" in state.problems(LEAVES)[0]
            # it comes back once the checkpoint of its leaving is written (its session then continues from it):
            # a fresh book, and the trades subscription it never left (one subscriber per topic)
            wait_for(lambda: {c.path.name for c in checkpoints(tmp_path / "rec", venue, LEAVES)} - before_leaving, 60,
                     "the checkpoint of the pair's leaving")
            back_us = time.time_ns() // 1000
            assert feed.set_pairs([STAYS, JOINS, LEAVES]) == ((LEAVES,), ())
            wait_for(lambda: state.get(LEAVES) is not None and state.is_healthy(LEAVES)
                     and state.get(LEAVES).health.trades > 10, 60, "the pair that came back healthy with trades")
            subs = exchange.call(lambda: {t: len(c) for (_m, t), c in exchange.server.hub.subs.items() if c})
            assert all(n == 1 for t, n in subs.items() if _names(t, LEAVES)), subs
            assert state.get(LEAVES).health.duplicate_trades == 0

            exchange.freeze()
            try:
                final = {s: exchange.book(s, 50) for s in symbols}
                wait_for(lambda: all(state.get(s).best_bid == final[s][1][0][0]
                                     and state.get(s).best_ask == final[s][2][0][0] for s in symbols), 10,
                         "the feed at the exchange's final books")
            finally:
                exchange.resume()
            stays = state.get(STAYS).health
        finally:
            feed.stop()
            feed.wait_recording(10)
        trade_ids = {s: exchange.trade_ids(s) for s in symbols}

    # the pair that stays: not one resync, gap, reconnect or error more, and one book subscription all along
    assert (stays.resyncs, stays.gaps, stays.reconnects, stays.errors) == (
        stays_before.resyncs, stays_before.gaps, stays_before.reconnects, stays_before.errors) == (0, 0, 0, 0)
    # what was recorded: the pair that stays has one snapshot, then deltas and every trade in order; the pair
    # that left has a declared gap, then a fresh snapshot; the pair that joined starts with its own snapshot
    syncs = {s: BookSync() for s in symbols}
    trades: dict[str, list[int]] = {s: [] for s in symbols}
    first_back_us: int | None = None  # exchange time of the first trade recorded after the pair came back
    snapshots = dict.fromkeys(symbols, 0)
    gaps: list[str] = []
    for ev in read_events(tmp_path / "rec"):
        if isinstance(ev, BookSnapshot):
            snapshots[ev.symbol] += 1
            syncs[ev.symbol].on_snapshot(ev)
        elif isinstance(ev, BookDelta):
            syncs[ev.symbol].on_delta(ev)
        elif isinstance(ev, Trade):
            trades[ev.symbol].append(int(ev.trade_id))
            if ev.symbol == LEAVES and -1 in trades[LEAVES] and first_back_us is None:
                first_back_us = ev.ts_us
        elif isinstance(ev, FeedGap):
            assert ev.symbol == LEAVES, ev
            gaps.append(ev.reason)
            trades[LEAVES].append(-1)  # the gap: ids may jump here
    assert (snapshots[STAYS], snapshots[JOINS], snapshots[LEAVES]) == (1, 1, 2)
    for s in symbols:
        assert syncs[s].gaps == 0 and syncs[s].in_sync
        assert [list(x) for x in syncs[s].book.bids.top(50)] == final[s][1]
        assert [list(x) for x in syncs[s].book.asks.top(50)] == final[s][2]
        for part in " ".join(map(str, trades[s])).split("-1"):  # every stretch between gaps: no trade missing or twice
            ids = [int(x) for x in part.split()]
            if ids:
                first = trade_ids[s].index(ids[0])
                assert ids == trade_ids[s][first: first + len(ids)], f"{s}: a trade missing or twice"
    assert gaps == ["left the feed's pairs", "joined: the session continues from the recording"]
    assert trades[LEAVES].count(-1) == 2 and len(trades[LEAVES]) > 10
    # What ccxt cached for the pair while it was away (the shared subscription went on) is not recorded as if
    # it followed the gap: the first trade after it came back was made after the midpoint of its absence,
    # where the cached backlog starts at its leaving (found by the soak: a hole in that backlog, from a
    # connection lost while the pair was away, was recorded with no gap)
    assert first_back_us is not None and first_back_us > (left_us + back_us) // 2, (
        first_back_us, left_us, back_us)


def test_a_pair_that_leaves_and_comes_back_continues_its_session_and_equals_a_replay_of_the_whole_recording(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rec, tf = tmp_path / "rec", "2s"
    settings = HeliosSettings.from_dict({"recording": {"checkpoint_every_s": 6}})
    with start_in_thread(SyntheticSource([STAYS, LEAVES], seed=11)) as exchange:
        feed = Feed("binance", [STAYS, LEAVES], settings, ccxt_config=exchange.ccxt_config(), record_to=rec,
                    timeframe=tf)
        feed.start()
        try:
            wait_for(lambda: len(feed.state.history(LEAVES)) >= 6, 60, "6 candles of the pair that will leave")
            before = {c.path.name for c in checkpoints(rec, "binance", LEAVES)}
            feed.set_pairs([STAYS])
            # the checkpoint of its leaving: the newest, written once its last events are on disk
            wait_for(lambda: checkpoints(rec, "binance", LEAVES)
                     and checkpoints(rec, "binance", LEAVES)[0].path.name not in before, 120,
                     "the checkpoint written as the pair left")
            left = checkpoints(rec, "binance", LEAVES)[0]
            # one written before the leaving is not enough for a pair this process followed: refused
            assert warm_engine(rec, "binance", LEAVES, settings, tf, min_clock_us=left.clock_us + 1).engine is None
            candles_at_leaving = len(feed.state.history(STAYS))
            wait_for(lambda: len(feed.state.history(STAYS)) >= candles_at_leaving + 2, 60, "two candles while away")
            with caplog.at_level(logging.INFO, logger="helios_orderflow.live.feed"):
                assert feed.set_pairs([STAYS, LEAVES]) == ((LEAVES,), ())
            assert any(r.getMessage().startswith(f"helios: {LEAVES} continues its recorded session")
                       for r in caplog.records), [r.getMessage() for r in caplog.records]
            # its first publication carries the candle history it left with
            wait_for(lambda: len(feed.state.history(LEAVES)) >= 6, 60, "the pair published again")
            back = len(feed.state.history(LEAVES))
            wait_for(lambda: len(feed.state.history(LEAVES)) >= back + 6, 60, "6 candles after it came back")
        finally:
            feed.stop()
            feed.wait_recording(10)
        frame = candles_to_frame(list(feed.state.history(LEAVES)))

    gaps = [ev for ev in read_events(rec) if isinstance(ev, FeedGap)]
    assert [(g.symbol, g.reason) for g in gaps] == [
        (LEAVES, "left the feed's pairs"), (LEAVES, "joined: the session continues from the recording")]
    offline = compute_features(rec, LEAVES, tf, settings, cache=False, include_partial=False)
    same = offline[offline["date"].isin(frame["date"])].reset_index(drop=True)
    # every candle it published, before it left and after it came back: equal to the replay, column for column
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), same, check_exact=True)
    after = frame[frame["date"] > pd.Timestamp(gaps[1].ts_us, unit="us", tz="UTC")]
    assert len(after) >= 5
    first_after = after.iloc[0]
    before = frame[frame["date"] < first_after["date"]].iloc[-1]
    assert first_after["cvd"] != 0  # the session's CVD goes on, not a fresh zero
    if first_after["date"].date() == before["date"].date():  # the same session (00:00 UTC anchor)
        assert first_after["cvd"] == pytest.approx(before["cvd"] + first_after["delta"], abs=1e-9)


def _names(topic: str, symbol: str) -> bool:
    """Whether a venue's topic name names ``symbol`` (btcusdt@depth, books:BTC-USDT, trades:ETH-USDT ...)."""
    base, quote = symbol.split("/")
    t = topic.lower()
    return f"{base}{quote}".lower() in t or f"{base}-{quote}".lower() in t or f"{base}_{quote}".lower() in t


def test_pairs_set_before_start_are_the_ones_followed_and_an_empty_list_is_refused(tmp_path: Path) -> None:
    with start_in_thread(SyntheticSource([STAYS, JOINS], seed=3)) as exchange:
        feed = Feed("binance", [STAYS, LEAVES], ccxt_config=exchange.ccxt_config())
        assert feed.set_pairs([STAYS, LEAVES]) == ((), ())
        assert feed.set_pairs([JOINS]) == ((JOINS,), (STAYS, LEAVES))
        assert feed.state.symbols == (JOINS,) and feed.state.get(STAYS) is None
        with pytest.raises(Exception, match="at least one pair"):
            feed.set_pairs([])
        feed.start()
        try:
            wait_for(lambda: feed.state.is_healthy(JOINS), 60, "the only pair healthy")
            assert feed.stats.by_symbol[JOINS] > 0 and feed.stats.by_symbol[STAYS] == 0
        finally:
            feed.stop()
