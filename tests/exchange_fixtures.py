"""Helpers for the local-exchange tests: servers, real ccxt.pro clients pointed at them, and the loops that
follow books and trades and compare them with what the server says it sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ccxt.pro as ccxtpro

from helios_orderflow.emulator import ServerHandle, SyntheticSource, parse_faults, start_in_thread
from tests.waits import wait_for, wait_for_async

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
STALL_S = 3.0  # no book update for this long while the market moves = a dead connection
T = TypeVar("T")
#: how long the venue tests' clients follow the books, and the comparisons that minute must give per pair: one
#: book message per 100 ms step with a change (~600), less a quarter for steps without one and a loaded machine
FOLLOW_S = 60.0
MIN_CHECKS = 450


@contextlib.contextmanager
def synthetic_server(symbols: list[str] | None = None, seed: int = 1, faults: str | None = None,
                     venue: str = "binance", **kwargs: Any) -> Iterator[ServerHandle]:
    """A synthetic-market server in a thread speaking ``venue``, recording what it sent (``record=True``)."""
    source = SyntheticSource(symbols or SYMBOLS, seed=seed, history_minutes=300)
    handle = start_in_thread(source, faults=parse_faults(faults), record=True, venue=venue, **kwargs)
    try:
        yield handle
    finally:
        handle.stop()


def freeze_after_a_push(handle: ServerHandle) -> None:
    """Freeze the market where every book topic shows the server's book. Bybit's 200 ms topics
    (``orderbook.1000``, spot ``orderbook.200``) push on every second step only: frozen after any other step they
    would hold the book of 100 ms before until their next push, which a frozen market never brings. A dialect
    with such topics says when they pushed last (``slow_topics_pushed_last``); elsewhere every step pushes."""
    dialect = handle.server.dialect
    pushed_last = getattr(dialect, "slow_topics_pushed_last", None)

    def freeze_if_pushed() -> bool:
        if handle.server.frozen or pushed_last is None or pushed_last():
            handle.server.freeze()
            return True
        return False

    while not handle.call(freeze_if_pushed):
        time.sleep(0.02)


def open_connections(handle: ServerHandle) -> set[Any]:
    """The websocket connections the server holds open now (read on its loop)."""
    return handle.call(lambda: set(handle.server.hub.conns))


def assert_stop_ended_everything(feed: Any, thread: Any, threads_before: set[Any],
                                 conns_before: set[Any] | None, handle: ServerHandle | None = None) -> None:
    """After ``feed.stop()`` returned: its thread has ended (stop did not give up on it after its own budget),
    every thread the feed started has ended, and the exchange (``handle``) sees every websocket the feed opened
    closed. The waits end on those events; their bound only bounds a hang."""
    assert not thread.is_alive() and not feed.running
    wait_for(lambda: not [t for t in threading.enumerate() if t not in threads_before and t.is_alive()], 30,
             "every thread the feed started to end",
             detail=lambda: str([t.name for t in threading.enumerate() if t not in threads_before]))
    if handle is not None and conns_before is not None:
        wait_for(lambda: not open_connections(handle) - conns_before, 30,
                 "the exchange to see every websocket of the feed closed")


def ccxt_client(handle: Any, market: str = "spot", keep_alive_ms: int | None = None) -> Any:
    """The venue's real ccxt.pro client (``ccxt.pro.binance`` for the Binance dialect, ``ccxt.pro.okx`` for
    OKX, ...) pointed at the local exchange by its ``urls`` override."""
    venue = getattr(handle, "venue", "binance")
    config: dict[str, Any] = dict(handle.ccxt_config(market))
    config["enableRateLimit"] = False
    # ccxt keeps at most this many levels per side (default 1000) and drops the rest; on a real book that
    # moves, a level beyond the snapshot's depth then reappears in the top 100 on the server but not in ccxt
    config["options"] = dict(config["options"], watchOrderBookLimit=5000)
    # ccxt keeps the last tradesLimit trades per symbol (default 1000) and drops older ones a consumer has not read
    # yet: these clients measure what the exchange delivers, and a loaded machine can stall their loop for longer
    # than 1000 trades take at the replay's speed (1,139 were dropped beside a process burning a core)
    config["tradesLimit"] = 100_000
    if keep_alive_ms:
        config["streaming"] = {"keepAlive": keep_alive_ms, "maxPingPongMisses": 2}
    from helios_orderflow.emulator.dialects import dialect_class

    return getattr(ccxtpro, dialect_class(venue).ccxt_id(market))(config)


@dataclass
class FollowStats:
    """What a client loop saw for one symbol."""

    updates: int = 0
    checks: int = 0  # books compared with the server's book at the same update id
    mismatches: int = 0
    first_mismatch: str = ""
    crossed_seen: int = 0
    errors: Counter = field(default_factory=Counter)


BookCheck = Callable[[str, Any, Any], None]


async def watch_books(ex: Any, symbols: list[str], seconds: float, stats: dict[str, Any], on_book: BookCheck,
                      ) -> dict[str, Any]:
    """Watch ``symbols`` for ``seconds``, calling ``on_book(symbol, book, stats[symbol])`` on every book ccxt
    returns (each stats object counts ``updates`` and ``errors``). Errors are counted and the watch retried, as a
    feed's loop must (ccxt resubscribes and re-snapshots on the next call)."""
    end = time.monotonic() + seconds

    async def one(sym: str) -> None:
        st = stats[sym]
        while time.monotonic() < end:
            left = end - time.monotonic()
            try:
                ob = await asyncio.wait_for(ex.watch_order_book(sym), timeout=max(0.1, min(STALL_S, left)))
            except TimeoutError:
                if left > STALL_S:
                    # silence while the market moves: ccxt's receive loop is dead (it raises on a malformed
                    # frame inside a callback and reads nothing more); only reconnecting revives it
                    st.errors["Stall"] += 1
                    await ex.close_ws_clients()
                continue
            except asyncio.CancelledError:
                # ccxt cancels a connection's pending futures when another loop closed it (stall recovery)
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                st.errors["Cancelled"] += 1
                continue
            except Exception as exc:  # a feed loop retries every error; the test counts them
                st.errors[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            st.updates += 1
            on_book(sym, ob, st)

    await asyncio.gather(*(one(s) for s in symbols))
    return stats


def count_crossed(st: FollowStats, bids: list, asks: list) -> None:
    if bids and asks and bids[0][0] >= asks[0][0]:
        st.crossed_seen += 1


def compare_top(st: FollowStats, bids: list, asks: list, server: tuple[list, list], depth: int, where: str) -> None:
    """One check of a client's top ``depth`` levels against the server's book of the same update."""
    st.checks += 1
    if (bids, asks) != (server[0][:depth], server[1][:depth]):
        st.mismatches += 1
        if not st.first_mismatch:
            st.first_mismatch = f"{where}: client {bids[:2]} {asks[:2]} server {server[0][:2]} {server[1][:2]}"


async def follow_books(ex: Any, handle: ServerHandle, symbols: list[str], seconds: float,
                       depth: int = 100) -> dict[str, FollowStats]:
    """Watch ``symbols`` for ``seconds``; after every update compare ccxt's top ``depth`` levels with the
    server's book at the same update id (exact float equality). Errors are counted and the watch retried."""

    def check(sym: str, ob: Any, st: FollowStats) -> None:
        bids, asks = ob["bids"][:depth], ob["asks"][:depth]
        count_crossed(st, bids, asks)
        server = handle.book_at(sym, ob["nonce"])
        if server is not None:
            compare_top(st, bids, asks, server, depth, f"nonce {ob['nonce']}")

    return await watch_books(ex, symbols, seconds, {s: FollowStats() for s in symbols}, check)


async def rest_book_results(ex: Any, symbol: str, limit: int, calls: int) -> list[str]:
    """``calls`` REST order-book requests one after another: "ok", or the name of the exception each raised."""
    out = []
    for _ in range(calls):
        try:
            await ex.fetch_order_book(symbol, limit)
            out.append("ok")
        except Exception as exc:
            out.append(type(exc).__name__)
    return out


def errors_of(stats: dict[str, Any]) -> Counter:
    """The errors of every symbol's follow loop, added up by kind."""
    out: Counter = Counter()
    for s in stats.values():
        out.update(s.errors)
    return out


def assert_exact_and_converged(stats: dict[str, Any], converged: dict[str, bool], symbols: list[str]) -> None:
    """No book a follow loop checked differed from the server's, each symbol was checked more than 5 times,
    and every symbol's book converged."""
    for sym, s in stats.items():
        assert s.mismatches == 0, (sym, s.first_mismatch)
        assert s.checks > 5, sym
    assert converged == dict.fromkeys(symbols, True)


async def converge(ex: Any, handle: ServerHandle, symbols: list[str], timeout: float = 20.0,
                   depth: int = 100) -> dict[str, bool]:
    """Freeze the market, then keep calling ``watch_order_book`` until ccxt's book has the server's last
    update id; True per symbol when the top ``depth`` levels then equal the server's exactly."""
    handle.freeze()
    result = {}
    for sym in symbols:
        deadline = time.monotonic() + timeout
        ok = False
        tries = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ex.watch_order_book(sym), timeout=1.0)
            ob = ex.orderbooks.get(sym) if ex.orderbooks else None
            last_id, bids, asks = handle.book(sym, depth)
            if ob is not None and ob["nonce"] == last_id:
                ok = (ob["bids"][:depth], ob["asks"][:depth]) == (bids, asks)
                break
            tries += 1
            if tries % 3 == 0:  # no snapshot for 3 s on a frozen market: the connection is dead, reconnect
                await ex.close_ws_clients()
            await asyncio.sleep(0.05)
        result[sym] = ok
    return result


async def collect_trades(ex: Any, symbols: list[str], stop: asyncio.Event, trade_id: Callable[[str], int] = int,
                         got: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Every trade id ``watch_trades`` returns per symbol until ``stop`` is set (into ``got`` as they come;
    ``trade_id`` turns ccxt's id into the market's number).

    ccxt returns a trade that arrived while nobody awaited ``watch_trades`` only with the next trade
    message, so a caller that wants every trade up to some point lets the market run past it."""
    got = {s: [] for s in symbols} if got is None else got

    async def one(sym: str) -> None:
        while not stop.is_set():
            try:
                trades = await asyncio.wait_for(ex.watch_trades(sym), timeout=0.5)
            except TimeoutError:
                continue
            got[sym].extend(trade_id(t["id"]) for t in trades)

    await asyncio.gather(*(one(s) for s in symbols))
    return got


async def with_every_trade(handle: ServerHandle, clients: list[tuple[Any, list[str]]],
                           books: Callable[[], Awaitable[T]], trade_id: Callable[[str], int] = int,
                           timeout_s: float = 60.0) -> tuple[T, dict[str, list[int]], dict[str, list[int]]]:
    """Collect the trades of each ``(client, symbols)`` while ``books()`` runs (it follows the books and converges
    them: it leaves the market frozen); returns its result, the trade ids received and the ids the server sent
    up to the freeze, once every one of those was delivered (or ``timeout_s`` passed: the caller's assertions
    then say which are missing)."""
    got: dict[str, list[int]] = {s: [] for _, symbols in clients for s in symbols}
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(collect_trades(ex, symbols, stop, trade_id, got)) for ex, symbols in clients]
    try:
        # trades first: every trade after the first received must arrive
        await wait_for_async(lambda: all(got.values()), timeout_s, "a first trade of every symbol")
        result = await books()
        sent = {s: handle.trade_ids(s) for s in got}
        handle.resume()  # trades that arrived while nobody awaited come with the next ones
        with contextlib.suppress(AssertionError):
            await wait_for_async(lambda: all(got[s] and max(got[s]) >= sent[s][-1] for s in got), timeout_s,
                                 "the last trade sent before the freeze")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return result, got, sent


def assert_every_trade_once(got: dict[str, list[int]], sent: dict[str, list[int]], at_least: float,
                            in_order: bool = False) -> dict[str, int]:
    """Per symbol: no trade delivered twice, and every trade the server sent from the first one received on was
    received, in id order (``in_order``: in the order received, else sorted), at least ``at_least`` of them.
    Returns how many were expected per symbol."""
    counts = {}
    for sym, ids in got.items():
        received = ids if in_order else sorted(set(ids))
        assert len(set(ids)) == len(ids), sym  # no trade delivered twice
        expected = [t for t in sent[sym] if t >= received[0]]
        assert received[: len(expected)] == expected, (sym, len(received), len(expected))
        assert len(expected) >= at_least, (sym, len(expected))
        counts[sym] = len(expected)
    return counts


async def trades_published(handle: ServerHandle, counts: dict[str, int], timeout_s: float = 60.0) -> None:
    """Until the server has published at least ``counts[symbol]`` trades of each symbol."""
    await wait_for_async(lambda: all(len(handle.trade_ids(s)) >= n for s, n in counts.items()), timeout_s,
                         f"trades published: {counts}")


@dataclass
class FeedRun:
    """What ``feed_rebuilds_the_servers_books`` measured, per pair."""

    healthy_after_s: float
    unhealthy_samples: int  # pair-samples (every 100 ms) that were not healthy after all pairs first were
    compared: dict[str, int]  # recorded book states compared with the server's at the same update id
    whole_depth_equal: dict[str, int]  # of those, equal over the whole ``depth`` (not only ``exact_depth``)
    trades: dict[str, int]
    health: dict[str, Any]


def feed_rebuilds_the_servers_books(venue: str, pairs: list[str], tmp_path: Any, settings: Any = None,
                                    updates: int = 200, depth: int = 100, exact_depth: int | None = None,
                                    min_compared: int = 150, market: str = "spot") -> FeedRun:
    """``Feed(venue, pairs)`` against a synthetic market, recording, until every pair has taken ``updates`` book
    updates (~20 s at the market's 10 a second) and 60 trades; then the market freezes and the feed publishes
    its last book. Holds: every pair healthy at every look once healthy (``healthy_after_s``: how long that took,
    reported, not bounded: speed goes to ``make bench``); the recording,
    replayed through ``BookSync``, gives after every book event the server's book at the same update id over
    the top ``exact_depth`` (default ``depth``) levels, at least ``min_compared`` times a pair, and ends on the
    server's last id; no gap; the venue's trade ids once and in order (a gap-free run of what the server sent,
    at least 50), each with the server's amount in base units (on OKX swaps ccxt counts contracts: the feed
    converts them); health counts no gap, reconnect, resync or error and a best bid/offer where the venue has
    one. Returns the figures for the test to print or check further."""
    from helios_orderflow.book.sync import BookSync
    from helios_orderflow.core.events import BookDelta, BookSnapshot, FeedGap, Trade
    from helios_orderflow.live.feed import Feed
    from helios_orderflow.live.venue_checks import NO_BBO
    from helios_orderflow.recording.reader import read_events

    exact = exact_depth or depth
    with synthetic_server(pairs, seed=11, venue=venue, record_history=100_000, record_depth=depth) as handle:
        feed = Feed(venue, pairs, settings, ccxt_config=handle.ccxt_config(market), record_to=tmp_path / "rec",
                    timeframe="2s")
        try:
            feed.start()
            healthy_after = wait_for(lambda: all(feed.state.is_healthy(s) for s in pairs), 60, "every pair healthy")
            unhealthy = 0

            def look() -> None:
                nonlocal unhealthy
                unhealthy += sum(not feed.state.is_healthy(s) for s in pairs)

            wait_for(lambda: all(feed.state.get(s).health.book_updates >= updates
                                 and feed.state.get(s).health.trades >= 60 for s in pairs),
                     120 + updates, f"{updates} book updates and 60 trades a pair", every=look, poll_s=0.1)
            handle.freeze()
            final = {s: handle.book(s, depth) for s in pairs}
            wait_for(lambda: all(feed.state.get(s).best_bid == final[s][1][0][0] for s in pairs), 30,
                     "the feed to publish the final book")
            health = {s: feed.state.get(s).health for s in pairs}
        finally:
            feed.stop()
        server_ids = {s: handle.trade_ids(s) for s in pairs}
        server_amounts = {s: handle.trade_amounts(s) for s in pairs}
        wrong_amounts: list[Any] = []
        syncs = {s: BookSync() for s in pairs}
        compared = dict.fromkeys(pairs, 0)
        whole = dict.fromkeys(pairs, 0)
        trades: dict[str, list[int]] = {s: [] for s in pairs}
        for ev in read_events(tmp_path / "rec"):
            if isinstance(ev, FeedGap):
                raise AssertionError(f"no gap expected without faults: {ev}")
            if isinstance(ev, Trade):
                trades[ev.symbol].append(int(ev.trade_id))
                if ev.amount != server_amounts[ev.symbol][int(ev.trade_id)]:
                    wrong_amounts.append(ev)
                continue
            if isinstance(ev, BookSnapshot):
                syncs[ev.symbol].on_snapshot(ev)
            elif isinstance(ev, BookDelta):
                assert syncs[ev.symbol].on_delta(ev).value == "applied", ev
            else:
                continue
            book = syncs[ev.symbol].book
            server = handle.book_at(ev.symbol, book.update_id)
            assert server is not None, f"{ev.symbol}: the exchange never published update id {book.update_id}"
            bids, asks = [list(x) for x in book.bids.top(depth)], [list(x) for x in book.asks.top(depth)]
            assert (bids[:exact], asks[:exact]) == (server[0][:exact], server[1][:exact]), \
                f"{ev.symbol} at {book.update_id}"
            whole[ev.symbol] += (bids, asks) == (server[0], server[1])
            compared[ev.symbol] += 1
    assert unhealthy == 0, unhealthy
    assert wrong_amounts == [], wrong_amounts[:3]
    for s in pairs:
        assert syncs[s].gaps == 0 and syncs[s].in_sync
        assert compared[s] >= min_compared, (s, compared[s])
        assert syncs[s].book.update_id == final[s][0]
        ids = trades[s]
        first = server_ids[s].index(ids[0])
        assert ids == server_ids[s][first:first + len(ids)] and len(ids) >= 50, s  # the venue's ids, in order
        h = health[s]
        assert (h.gaps, h.reconnects, h.resyncs, h.errors) == (0, 0, 0, 0), h
        assert h.last_error is None, h.last_error  # no check (checksum, sequence) fired
        assert (h.bbo > 0) == (venue not in NO_BBO), h
    return FeedRun(healthy_after, unhealthy, compared, whole, {s: len(t) for s, t in trades.items()}, health)


def replay_against_server(rec: Any, symbols: list[str], server_at: Callable[[Any], tuple[list, list] | None],
                          depth: int) -> tuple[dict[str, Any], Counter, dict[str, list[Any]]]:
    """Replay a feed's recording ``rec`` through ``BookSync``: after every delta the book's top ``depth`` levels
    equal ``server_at(delta)`` (the server's bids and asks for it); a ``FeedGap`` fails (no fault was made).
    Returns (each symbol's ``BookSync``, book states compared per symbol, each symbol's ``Trade`` events)."""
    from helios_orderflow.book.sync import BookSync
    from helios_orderflow.core.events import BookDelta, BookSnapshot, FeedGap, Trade
    from helios_orderflow.recording.reader import read_events

    syncs = {s: BookSync() for s in symbols}
    compared: Counter = Counter()
    trades: dict[str, list[Any]] = {s: [] for s in symbols}
    for ev in read_events(rec):
        if isinstance(ev, BookSnapshot):
            syncs[ev.symbol].on_snapshot(ev)
        elif isinstance(ev, BookDelta):
            sync = syncs[ev.symbol]
            sync.on_delta(ev)
            server = server_at(ev)
            assert server is not None, f"{ev.symbol}: the exchange never published the book of {ev}"
            assert [list(x) for x in sync.book.bids.top(depth)] == server[0][:depth], ev
            assert [list(x) for x in sync.book.asks.top(depth)] == server[1][:depth], ev
            compared[ev.symbol] += 1
        elif isinstance(ev, Trade):
            trades[ev.symbol].append(ev)
        elif isinstance(ev, FeedGap):
            raise AssertionError(f"no gap expected without faults: {ev}")
    return syncs, compared, trades


def book_samples(events: list[tuple[int, Any]], grid: list[int]) -> list[tuple[float, float, float, float] | None]:
    """Best bid price/size and ask price/size after every event with time < each grid point (``(time, event)``
    sorted by time; book events are applied, others skipped); None where the book is not in sync or a side is
    empty. The fidelity tests sample the source's and the feed's books with it."""
    from helios_orderflow.book.sync import BookSync
    from helios_orderflow.core.events import BookDelta, BookSnapshot

    sync = BookSync()
    out: list[tuple[float, float, float, float] | None] = []
    i = 0
    for g in grid:
        while i < len(events) and events[i][0] < g:
            ev = events[i][1]
            if isinstance(ev, BookSnapshot):
                sync.on_snapshot(ev)
            elif isinstance(ev, BookDelta):
                sync.on_delta(ev)
            i += 1
        bid, ask = sync.book.bids.best(), sync.book.asks.best()
        out.append((*bid, *ask) if sync.in_sync and bid and ask else None)
    return out


# ---- helios exchange in its own process ------------------------------------------------------------------------
def synthetic_recording(root: Any, symbol: str, start_us: int, span_us: int, seed: int = 4) -> Any:
    """A Helios recording at ``root`` of ``symbol``'s synthetic market over ``span_us`` from ``start_us``, for
    ``helios exchange --replay``."""
    from helios_orderflow.emulator.synth import synth_events
    from helios_orderflow.recording.writer import RecordingWriter

    with RecordingWriter(root, flush_by_time=False) as writer:
        for ev in synth_events([symbol], seed, start_us, span_us):
            writer.write(ev)
    return root


def helios_state(url: str, symbol: str, limit: int = 5) -> dict[str, Any]:
    """The exchange's ``/helios/state`` of ``symbol``: its venue's last update id, book and trade counter."""
    import requests

    r = requests.get(f"{url}/helios/state", params={"symbol": symbol, "limit": str(limit)}, timeout=10)
    r.raise_for_status()
    return dict(r.json())


@contextlib.contextmanager
def exchange_process(venue: str, args: list[str], log: Any, symbols: str | list[str]) -> Iterator[Any]:
    """``helios exchange --venue VENUE ARGS`` in a subprocess, yielded once the market of each of ``symbols`` has
    moved (its update id went on and it traded since the process listened); stopped on leaving, which must exit
    0."""
    from helios_orderflow.emulator.process import start_subprocess

    watched = [symbols] if isinstance(symbols, str) else symbols
    proc = start_subprocess(["--venue", venue, *args], log)
    try:
        first: dict[str, dict[str, Any]] = {}

        def moved(s: str) -> bool:
            try:
                now = helios_state(proc.url, s)
            except Exception:  # not served yet: ask again
                return False
            was = first.setdefault(s, now)
            return bool(now["lastUpdateId"] > was["lastUpdateId"] and now["next_trade_id"] > was["next_trade_id"])

        wait_for(lambda: all(moved(s) for s in watched), 60, f"{venue} {watched}: a step and a trade of the market",
                 alive=lambda: None if proc.proc.poll() is None else f"helios exchange exited ({proc.proc.returncode})",
                 poll_s=0.1, detail=lambda: proc.log_path.read_text()[-3000:])
        yield proc
    finally:
        assert proc.stop() == 0


def printed_ccxt_config(proc: Any, venue: str, market: str = "spot") -> dict[str, Any]:
    """The ``exchange.ccxt_config`` the exchange process printed for ``market``, from its line naming the venue's
    ``exchange.name``."""
    line = next(x for x in proc.log_path.read_text().splitlines() if f"Freqtrade / ccxt ({market}): " in x)
    assert f"exchange.name {venue}" in line, line
    return dict(json.loads(line.split(f"({market}): ", 1)[1]))


def assert_serves(proc: Any, venue: str, symbol: str, first_id: int, markets: tuple[str, ...] = ("spot",)) -> None:
    """The exchange process serves ``symbol`` as ``venue``: ``/helios/state`` names the venue and an update id at
    or after ``first_id`` (the venue's own id a client read first, > 0), and it printed the dialect's ccxt config
    for each of ``markets``."""
    from helios_orderflow.emulator.dialects import dialect_class

    state = helios_state(proc.url, symbol)
    assert state["venue"] == venue and state["lastUpdateId"] >= first_id > 0, (state["lastUpdateId"], first_id)
    for market in markets:
        assert printed_ccxt_config(proc, venue, market) == dialect_class(venue).ccxt_config(proc.url, market)


# ---- the live feed on a gap fault ------------------------------------------------------------------------------
def feed_declares_gaps(venue: str, symbols: list[str], tmp_path: Any, settings: Any = None, fired: int = 5) -> None:
    """``Feed(venue, symbols)`` on a market whose book messages skip an id now and then (``gap=1/10`` from the
    second second): once the exchange fired ``fired`` gaps, every pair has declared one."""
    from helios_orderflow.live.feed import Feed

    with synthetic_server(symbols, seed=3, faults="gap=1/10,after=2", venue=venue) as handle:
        feed = Feed(venue, symbols, settings, ccxt_config=handle.ccxt_config(), record_to=tmp_path / "rec")
        try:
            feed.start()
            wait_for(lambda: handle.fault_counts().get("gap", 0) >= fired, 60, f"{fired} gaps fired")
            wait_for(lambda: all(feed.state.get(s).health.gaps >= 1 for s in symbols), 30,
                     "every pair to declare a gap")
            gaps = [feed.state.get(s).health.gaps for s in symbols]
        finally:
            feed.stop()
        assert handle.fault_counts()["gap"] >= fired
    assert all(g >= 1 for g in gaps), gaps
