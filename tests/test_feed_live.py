"""The live feed against the local exchange with the real ccxt.pro binance client (no mocks).

The server (synthetic market, ``record=True``) logs the book after every diff it published and every trade
id, so what the feed published and recorded is compared with what the exchange really had.
"""

from __future__ import annotations

import json
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from helios_orderflow.core.events import FeedGap, Trade
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.features.compute import candles_to_frame, compute_features
from helios_orderflow.live.feed import Feed
from helios_orderflow.recording.reader import read_events
from tests.exchange_fixtures import assert_stop_ended_everything, open_connections, replay_against_server
from tests.waits import wait_for

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def assert_trade_jumps_declared(events: list[Any], symbol: str) -> None:
    """Every jump in ``symbol``'s recorded trade ids has a declared gap (``FeedGap``) before it."""
    last_id, gap_since = None, False
    for ev in events:
        if ev.symbol != symbol:
            continue
        if isinstance(ev, FeedGap):
            gap_since = True
        elif isinstance(ev, Trade):
            tid = int(ev.trade_id)
            assert last_id is None or tid == last_id + 1 or gap_since, f"{symbol}: {last_id} -> {tid} undeclared"
            last_id, gap_since = tid, False


@pytest.fixture(scope="module")
def exchange():
    handle = start_in_thread(SyntheticSource(SYMBOLS, seed=11), record=True, record_depth=100, record_history=100_000)
    yield handle
    handle.stop()


def test_every_recorded_book_state_and_trade_equals_what_the_exchange_published(exchange, tmp_path: Path):
    feed = Feed("binance", SYMBOLS, ccxt_config=exchange.ccxt_config(), record_to=tmp_path / "rec", timeframe="2s")
    feed.start()
    try:
        wait_for(lambda: all(feed.state.is_healthy(s) for s in SYMBOLS), 30, "all pairs healthy")

        def enough(s: str) -> bool:  # what is checked below: 40 book diffs, 10 trades, 3 closed 2 s candles
            snap = feed.state.get(s)
            return snap.health.book_updates > 40 and snap.health.trades >= 10 and len(snap.history) >= 3

        wait_for(lambda: all(enough(s) for s in SYMBOLS), 60, "40 book updates, 10 trades and 3 candles a pair")
        exchange.freeze()  # no more changes: the feed's last observation is the server's final book
        try:
            final = {s: exchange.book(s, 100) for s in SYMBOLS}
            wait_for(lambda: all(feed.state.get(s).best_bid == final[s][1][0][0] for s in SYMBOLS), 5,
                     "the feed to publish the exchange's final best bid")
            published = {s: feed.state.get(s) for s in SYMBOLS}

            # The engines' deferred timer work (heatmap columns, wall scans) is done once the feed is idle,
            # and published: SharedState shows the engine's newest heatmap column.
            def settled(s: str) -> bool:
                engine, shown = feed._pairs[s].engine, feed.state.get(s).engine.heatmap
                return not engine.unsettled and shown is not None and shown.seq == engine.heatmap.seq > 0

            wait_for(lambda: all(settled(s) for s in SYMBOLS), 2, "the deferred timer work settled and published")
        finally:
            exchange.resume()
    finally:
        feed.stop()
    server_trade_ids = {s: exchange.trade_ids(s) for s in SYMBOLS}

    syncs, compared, trades = replay_against_server(tmp_path / "rec", SYMBOLS,
                                                    lambda ev: exchange.book_at(ev.symbol, ev.update_id), 100)
    for s in SYMBOLS:
        assert syncs[s].gaps == 0 and syncs[s].in_sync
        assert compared[s] >= 40, f"{s}: only {compared[s]} book states compared"
        last_id, bids, asks = final[s]
        assert syncs[s].book.update_id == last_id
        assert [list(x) for x in syncs[s].book.bids.top(100)] == bids
        # SharedState published the same best prices, and the engine's view agrees
        assert (published[s].best_bid, published[s].best_ask) == (bids[0][0], asks[0][0])
        assert published[s].engine.best_bid == bids[0][0] and published[s].engine.best_ask == asks[0][0]
        # every trade since the first one received, no gap, no duplicate, in order
        ids = [int(t.trade_id) for t in trades[s]]
        server_ids = server_trade_ids[s]
        first = server_ids.index(ids[0])
        assert ids == server_ids[first : first + len(ids)]
        assert len(ids) >= 10
    h = published["BTC/USDT"].health
    assert (h.gaps, h.reconnects, h.resyncs, h.errors) == (0, 0, 0, 0) and h.trades > 0 and h.bbo > 0
    # Parity (short version of test_feed_parity): the 2 s candles published live equal the recording's.
    for s in SYMBOLS:
        live = candles_to_frame(list(feed.state.get(s).history))
        assert len(live) >= 3
        offline = compute_features(tmp_path / "rec", s, "2s", cache=False, include_partial=False)
        pd.testing.assert_frame_equal(live, offline, check_exact=True)


def test_start_is_idempotent_stop_ends_its_thread_and_connections_and_a_feed_refuses_pickling(exchange, caplog):
    threads_before, conns_before = set(threading.enumerate()), open_connections(exchange)
    feed = Feed("binance", ["ETH/USDT"], ccxt_config=exchange.ccxt_config(), engine=False)
    feed.start()
    thread = feed._runner.thread
    feed.start()
    assert feed._runner.thread is thread and feed.running
    assert thread.daemon
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(feed)
    wait_for(lambda: feed.state.is_healthy("ETH/USDT"), 30, "ETH/USDT healthy")
    assert open_connections(exchange) - conns_before  # the feed's book and trades sockets
    feed.stop()
    # stop() returned with the thread ended, not after giving up on it, and nothing of the feed is left running
    assert_stop_ended_everything(feed, thread, threads_before, conns_before, exchange)
    assert "did not stop" not in caplog.text
    feed.stop()  # idempotent
    # a stopped feed's pair ages and turns unhealthy on the reader's clock
    snap = feed.state.get("ETH/USDT")
    assert not snap.health.is_healthy(snap.health.last_book_mono_s + 5.1, feed.state.health_settings)
    # and it can be started again: a new thread, a fresh snapshot of the book
    feed.start()
    try:
        wait_for(lambda: feed.state.get("ETH/USDT").health.resyncs == 1 and feed.state.is_healthy("ETH/USDT"), 30,
                 "ETH/USDT resynced after restart")
    finally:
        feed.stop()


class _BrokenEngine(PairEngine):
    def on_event(self, ev: Any) -> None:
        if isinstance(ev, Trade):
            raise RuntimeError("engine bug")
        super().on_event(ev)


def test_an_unknown_pair_and_a_failing_engine_do_not_stall_the_other_pairs(exchange):
    def factory(exchange_id: str, symbol: str) -> PairEngine:
        cls = _BrokenEngine if symbol == "SOL/USDT" else PairEngine
        return cls(exchange_id, symbol)

    pairs = ["BTC/USDT", "NOPE/USDT", "SOL/USDT", "ETH/USDT"]
    errors: list[BaseException] = []
    previous_hook = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)  # nothing may escape the thread
    feed = Feed("binance", pairs, ccxt_config=exchange.ccxt_config(), engine=factory)
    try:
        feed.start()
        wait_for(lambda: all(feed.state.is_healthy(s) for s in ("BTC/USDT", "ETH/USDT")), 30, "good pairs healthy")
        wait_for(lambda: feed.state.get("SOL/USDT").health.last_error is not None, 30, "SOL/USDT engine failure")
        # the other pairs' engines go on after the failure (~1.5 s of BTC/USDT's events)
        since = feed.state.get("BTC/USDT").engine.events
        wait_for(lambda: feed.state.get("BTC/USDT").engine.events > max(50, since + 30)
                 and "is not a market" in " ".join(feed.state.problems("NOPE/USDT")), 30,
                 "30 more BTC/USDT engine events after SOL/USDT's engine failed, and NOPE/USDT refused")
        state = feed.state
        assert not state.is_healthy("NOPE/USDT")
        assert state.problems("NOPE/USDT") == (
            "no book received yet (last error: NOPE/USDT is not a market of binance)",
        )
        sol = state.get("SOL/USDT")
        assert "engine failed on Trade" in sol.health.last_error
        # The book itself is fine, but a frozen engine's walls and signals must not be traded on: the one health
        # record says so.
        assert sol.health.has_book and sol.health.in_sync and not sol.health.crossed
        assert not state.is_healthy("SOL/USDT") and sol.health.engine_failed
        assert state.problems("SOL/USDT") == (
            "the order-flow engine failed and its state is frozen (see the log; restart the bot)",)
        btc = state.get("BTC/USDT")
        assert btc.engine is not None and btc.engine.events > 50 and btc.health.errors == 0
        assert feed.stats.engine_errors == 1
    finally:
        feed.stop()
        threading.excepthook = previous_hook
    assert errors == []


def test_an_unreachable_exchange_is_retried_with_backoff_and_health_says_why(caplog):
    # Port 9 (discard) on localhost: nothing listens, every connection is refused at once.
    dead = "http://127.0.0.1:9"
    config = {"urls": {"api": {"public": f"{dead}/api/v3", "v1": f"{dead}/api/v1", "sapi": f"{dead}/sapi/v1"}},
              "options": {"fetchMarkets": {"types": ["spot"]}}}
    threads_before = set(threading.enumerate())
    feed = Feed("binance", ["BTC/USDT"], ccxt_config=config, engine=False)
    feed.start()
    thread = feed._runner.thread
    try:
        wait_for(lambda: feed.state.get("BTC/USDT").health.errors >= 3, 20, "three failed attempts")
        h = feed.state.get("BTC/USDT").health
        assert h.reconnects == h.errors and "loading markets" in h.last_error and not h.has_book
        assert feed.state.problems("BTC/USDT")[0].startswith("no book received yet (last error: loading markets")
        assert feed.running
    finally:
        feed.stop()
    # a stop during the backoff wakes the thread: it ended, stop did not give up on it
    assert_stop_ended_everything(feed, thread, threads_before, None)
    assert "did not stop" not in caplog.text


def test_a_trades_connection_lost_while_the_feed_is_busy_is_declared_as_a_gap(exchange, tmp_path: Path):
    """ccxt rejects only the watch calls pending when a connection dies; one that dies while the feed is
    draining trades would be reconnected silently by the next call. The feed must declare it anyway."""
    import ccxt

    clients: list[Any] = []
    killed: list[int] = []

    class KillsItsConnection(PairEngine):
        def on_event(self, ev: Any) -> None:
            super().on_event(ev)
            if isinstance(ev, Trade) and self.symbol == "BTC/USDT" and len(killed) < 2 and self.events % 40 == 0:
                ex = clients[0]
                for c in list(ex.clients.values()):  # we are on the feed thread, inside the trades loop
                    if "trade::BTC/USDT" in c.subscriptions:
                        killed.append(self.events)
                        c.on_error(ccxt.NetworkError("test: the connection died between two reads"))

    feed = Feed("binance", ["BTC/USDT", "ETH/USDT"], ccxt_config=exchange.ccxt_config(), record_to=tmp_path / "rec",
                engine=lambda ex_id, sym: KillsItsConnection(ex_id, sym), on_exchange=clients.append)
    feed.start()
    try:
        wait_for(lambda: len(killed) == 2, 60, "two connections killed mid-drain")
        wait_for(lambda: feed.state.get("BTC/USDT").health.trades > 150, 60, "trades after the second kill")
    finally:
        feed.stop()
    events = list(read_events(tmp_path / "rec"))
    gaps = [ev for ev in events if isinstance(ev, FeedGap) and "between two reads" in ev.reason]
    assert {g.symbol for g in gaps} == {"BTC/USDT", "ETH/USDT"} and len(gaps) == 4
    assert feed.state.get("ETH/USDT").health.reconnects == 2
    for symbol in ("BTC/USDT", "ETH/USDT"):
        assert_trade_jumps_declared(events, symbol)


def test_a_frame_handled_after_its_connection_was_lost_is_dropped_not_recorded_after_the_gap(exchange,
                                                                                              tmp_path: Path):
    """The soak's one incident: ccxt's keepalive gave up on the trades connection, the feed declared the gap,
    then ccxt still handled a frame it had read from the dead socket. That trade landed after the gap marker,
    so the trades lost while reconnecting had no gap before them. Here the keepalive's error is raised on the
    trades connection (as ccxt's ping loop does) and the next real frame is handled 50 ms later."""
    import ccxt

    clients: list[Any] = []
    held: list[int] = []

    class HoldsAFrame(PairEngine):
        def on_event(self, ev: Any) -> None:
            super().on_event(ev)
            if isinstance(ev, Trade) and self.symbol == "BTC/USDT" and not held and self.events > 100:
                ex = clients[0]
                c = next(c for c in ex.clients.values() if "trade::BTC/USDT" in c.subscriptions)
                handle = c.handle_text_or_binary_message  # the feed's guarded handler
                loop = ex.asyncio_loop

                def next_frame(data: Any) -> None:
                    trade = json.loads(data).get("data", {})
                    if trade.get("e") != "trade":
                        return handle(data)
                    c.handle_text_or_binary_message = handle
                    held.append(int(trade["t"]))
                    c.on_error(ccxt.RequestTimeout("test: ping-pong keepalive missing on time"))
                    loop.call_later(0.05, handle, data)  # read before the loss, handled after the gap

                c.handle_text_or_binary_message = next_frame

    feed = Feed("binance", ["BTC/USDT"], ccxt_config=exchange.ccxt_config(), record_to=tmp_path / "rec",
                engine=lambda ex_id, sym: HoldsAFrame(ex_id, sym), on_exchange=clients.append)
    feed.start()
    try:
        wait_for(lambda: bool(held), 60, "a frame held back on a dying connection")
        wait_for(lambda: feed.state.get("BTC/USDT").health.trades > 300, 60, "trades after the reconnect")
    finally:
        feed.stop()
    events = list(read_events(tmp_path / "rec"))
    gaps = [ev for ev in events if isinstance(ev, FeedGap)]
    assert len(gaps) == 1 and feed.state.get("BTC/USDT").health.reconnects == 1
    trade_ids = [int(ev.trade_id) for ev in events if isinstance(ev, Trade)]
    assert held[0] not in trade_ids, "the frame handled after the loss was recorded"
    assert held[0] - 1 in trade_ids  # everything before it was kept
    assert_trade_jumps_declared(events, "BTC/USDT")


def test_a_server_close_handled_between_two_reads_leaves_one_trades_subscription_and_no_trade_twice(exchange,
                                                                                                   tmp_path: Path):
    """The soak's duplicated trades (issue: about a fifth of all trades recorded twice under load). ccxt handles
    a server's close twice: ``on_close(1001)`` when the close frame is read (the client leaves
    ``exchange.clients``), and ``on_close(1006)`` a few callbacks later, when its receive loop finds the socket
    closed, which removes whatever client then holds the URL. When the trades loop was between two reads (as
    it is whenever the feed falls behind), it dials a new client in between; the late ``on_close`` unregisters
    that live client, the next call dials a third, and from then on two connections deliver every trade.

    Here the trades loop is held between two reads until ccxt has handled the server's close frame (what a
    busy feed does by itself), then dials at once, as the feed does after declaring the loss."""
    import asyncio

    hub = exchange.server.hub
    armed = threading.Event()
    kills: list[int] = []

    def trade_connections() -> list[Any]:
        return exchange.call(lambda: [c for c in hub.conns if "btcusdt@trade" in c.subs])

    def instrument(ex: Any) -> None:
        watch = ex.watch_trades_for_symbols

        async def held_between_reads(symbols: list[str], *args: Any, **kwargs: Any) -> Any:
            if armed.is_set() and len(kills) < 2:
                armed.clear()
                old = next(c for c in ex.clients.values() if "trade::BTC/USDT" in c.subscriptions)
                doomed = trade_connections()
                exchange.call(lambda: [asyncio.ensure_future(c.ws.close(code=1001)) for c in doomed])
                deadline = time.monotonic() + 30
                while ex.clients.get(old.url) is old and time.monotonic() < deadline:
                    await asyncio.sleep(0)  # ccxt reads the close frame meanwhile: on_close(1001)
                kills.append(len(kills))
            return await watch(symbols, *args, **kwargs)

        ex.watch_trades_for_symbols = held_between_reads

    feed = Feed("binance", ["BTC/USDT", "ETH/USDT"], ccxt_config=exchange.ccxt_config(), record_to=tmp_path / "rec",
                on_exchange=instrument)
    feed.start()
    try:
        for k in range(2):
            wait_for(lambda k=k: feed.state.get("BTC/USDT").health.trades > 100 * (k + 1), 60, "trades flowing")
            armed.set()
            wait_for(lambda k=k: len(kills) > k, 60, "the trades connection closed by the server")
        start = feed.state.get("BTC/USDT").health.trades
        wait_for(lambda: feed.state.get("BTC/USDT").health.trades > start + 300, 60, "trades after the reconnects")
        subscribed = len(trade_connections())
        health = feed.state.get("BTC/USDT").health
    finally:
        feed.stop()
        feed.wait_recording(10)
    assert subscribed == 1, f"{subscribed} connections deliver BTC/USDT trades"
    events = list(read_events(tmp_path / "rec"))
    ids = [int(ev.trade_id) for ev in events if isinstance(ev, Trade) and ev.symbol == "BTC/USDT"]
    assert len(ids) > 400 and len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} trades recorded twice"
    assert health.duplicate_trades == 0  # nothing reached the second line of defence: the cause is gone
    assert_trade_jumps_declared(events, "BTC/USDT")
    signed = {int(ev.trade_id): ev.amount if ev.side == "buy" else -ev.amount
              for ev in events if isinstance(ev, Trade) and ev.symbol == "BTC/USDT"}
    features = compute_features(tmp_path / "rec", "BTC/USDT", "1m", cache=False)  # per-candle deltas sum to CVD
    assert features["delta"].sum() == pytest.approx(sum(signed.values()), abs=1e-9)


def test_a_trade_ccxt_hands_over_twice_is_emitted_once_and_counted_in_health(exchange, tmp_path: Path, caplog):
    """The second line of defence: whatever path makes ccxt deliver a trade again (here its handler runs twice
    on every 25th trade frame, as a second connection would), the feed emits each trade id once per pair,
    the engine counts it once, and health says how many were dropped."""
    repeated: list[int] = []

    def instrument(ex: Any) -> None:
        handle_trade = ex.handle_trade

        def twice_now_and_then(client: Any, message: Any) -> Any:
            handle_trade(client, message)
            if message.get("s") == "BTCUSDT" and int(message["t"]) % 25 == 0:
                repeated.append(int(message["t"]))
                handle_trade(client, message)

        ex.handle_trade = twice_now_and_then

    feed = Feed("binance", ["BTC/USDT", "ETH/USDT"], ccxt_config=exchange.ccxt_config(), record_to=tmp_path / "rec",
                on_exchange=instrument)
    with caplog.at_level("WARNING", logger="helios_orderflow.live.feed"):
        feed.start()
        try:
            wait_for(lambda: len(repeated) >= 8, 60, "trades handed over twice")
            health = feed.state.get("BTC/USDT").health
            engine_health = feed.state.get("BTC/USDT").engine.health
        finally:
            feed.stop()
            feed.wait_recording(10)
    # ccxt's handler resolves the feed's hook synchronously, so every repeat is counted before it returns;
    # the published health is read earlier and may trail a busy feed thread by the repeats since.
    assert feed.stats.duplicate_trades == len(repeated) >= 8
    assert 8 <= health.duplicate_trades <= len(repeated)
    assert engine_health.duplicate_trades == 0  # the feed dropped them before the engine saw them
    ids = [int(ev.trade_id) for ev in read_events(tmp_path / "rec") if isinstance(ev, Trade)
           and ev.symbol == "BTC/USDT"]
    assert len(ids) == len(set(ids)) and set(repeated) <= set(ids)
    assert any("delivered again" in r.message for r in caplog.records)
