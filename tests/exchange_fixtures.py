"""Helpers for the local-exchange tests: servers, real ccxt.pro clients pointed at them, and the loops that
follow books and trades and compare them with what the server says it sent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ccxt.pro as ccxtpro

from helios_orderflow.emulator import ServerHandle, SyntheticSource, parse_faults, start_in_thread

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
STALL_S = 3.0  # no book update for this long while the market moves = a dead connection


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


def ccxt_client(handle: Any, market: str = "spot", keep_alive_ms: int | None = None) -> Any:
    """The venue's real ccxt.pro client (``ccxt.pro.binance`` for the Binance dialect, ``ccxt.pro.okx`` for
    OKX, ...) pointed at the local exchange by its ``urls`` override."""
    venue = getattr(handle, "venue", "binance")
    config: dict[str, Any] = dict(handle.ccxt_config(market))
    config["enableRateLimit"] = False
    # ccxt keeps at most this many levels per side (default 1000) and drops the rest; on a real book that
    # moves, a level beyond the snapshot's depth then reappears in the top 100 on the server but not in ccxt
    config["options"] = dict(config["options"], watchOrderBookLimit=5000)
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


async def follow_books(ex: Any, handle: ServerHandle, symbols: list[str], seconds: float,
                       depth: int = 100) -> dict[str, FollowStats]:
    """Watch ``symbols`` for ``seconds``; after every update compare ccxt's top ``depth`` levels with the
    server's book at the same update id (exact float equality). Errors are counted and the watch retried,
    as a feed's loop must (ccxt resubscribes and re-snapshots on the next call)."""
    stats = {s: FollowStats() for s in symbols}
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
            bids, asks = ob["bids"][:depth], ob["asks"][:depth]
            if bids and asks and bids[0][0] >= asks[0][0]:
                st.crossed_seen += 1
            server = handle.book_at(sym, ob["nonce"])
            if server is None:
                continue
            st.checks += 1
            if (bids, asks) != (server[0][:depth], server[1][:depth]):
                st.mismatches += 1
                if not st.first_mismatch:
                    st.first_mismatch = (f"nonce {ob['nonce']}: client {bids[:2]} {asks[:2]} "
                                         f"server {server[0][:2]} {server[1][:2]}")

    await asyncio.gather(*(one(s) for s in symbols))
    return stats


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


async def collect_trades(ex: Any, symbols: list[str], stop: asyncio.Event) -> dict[str, list[int]]:
    """Every trade id ``watch_trades`` returns per symbol until ``stop`` is set.

    ccxt returns a trade that arrived while nobody awaited ``watch_trades`` only with the next trade
    message, so a caller that wants every trade up to some point lets the market run past it."""
    got: dict[str, list[int]] = {s: [] for s in symbols}

    async def one(sym: str) -> None:
        while not stop.is_set():
            try:
                trades = await asyncio.wait_for(ex.watch_trades(sym), timeout=0.5)
            except TimeoutError:
                continue
            got[sym].extend(int(t["id"]) for t in trades)

    await asyncio.gather(*(one(s) for s in symbols))
    return got


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
                                    seconds: float = 20.0, depth: int = 100, exact_depth: int | None = None,
                                    min_compared: int = 150, market: str = "spot") -> FeedRun:
    """``Feed(venue, pairs)`` against a synthetic market for ``seconds``, recording; then the market freezes
    and the feed publishes its last book. Holds: every pair healthy within 10 s and all along; the recording,
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
            t0 = time.monotonic()
            while not all(feed.state.is_healthy(s) for s in pairs):
                assert time.monotonic() - t0 < 30, "the pairs never turned healthy"
                time.sleep(0.05)
            healthy_after = time.monotonic() - t0
            unhealthy = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                unhealthy += sum(not feed.state.is_healthy(s) for s in pairs)
                time.sleep(0.1)
            handle.freeze()
            final = {s: handle.book(s, depth) for s in pairs}
            deadline = time.monotonic() + 5
            while not all(feed.state.get(s).best_bid == final[s][1][0][0] for s in pairs):
                assert time.monotonic() < deadline, "the feed never published the final book"
                time.sleep(0.05)
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
    assert healthy_after < 10 and unhealthy == 0, (healthy_after, unhealthy)
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
