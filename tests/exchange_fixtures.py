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
