"""The local exchange speaks Bybit v5 (spot and USDT linear perpetuals) as the real ccxt.pro ``bybit`` client,
Helios' live feed and Freqtrade read it.

How a ccxt book is matched to the server's book: ccxt's Bybit book carries no update id (ccxt 4.5.90 sets no
nonce), so ``follow_books`` of ``exchange_fixtures`` cannot match by nonce. It carries the ``ts`` of the last
message it applied as its ``timestamp``, and the server steps the market every 100 ms at a distinct ``ts``;
the dialect records, for every step, the ``u`` of ``orderbook.50`` at that ``ts`` (``Bybit.u_at``), and
``book_at`` is keyed by that ``u``. So each observed book is compared with ``book_at(sym, u_at(sym,
timestamp))``: exact, per update, with no freezing. Only the top 50 levels are compared: ccxt subscribes
``orderbook.50`` by default, Bybit sends the top 50 only, and a step that changed only levels below the
50th sends nothing on the topic (its ``u`` stays, and the server's top 100 recorded under that ``u`` moves
on below level 50). Deeper topics (the feed's ``orderbook.1000``) are compared by freezing the market and
converging (``converge_bybit``: the book's ``timestamp`` equals the topic's last push, then the whole book).

ccxt applies Bybit deltas without checking ``u``; the clients here run with Helios' frame guard and
``live/bybit_book_check`` (as the feed does) unless a test shows what ccxt alone does. The check runs after
ccxt handled a frame, so the one book ccxt resolves from a frame whose ``u`` jumped is wrong: it is
counted as ``flagged`` (its connection failed right after it), never compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.pro as ccxtpro
import pytest
import requests

from helios_orderflow.core.settings import FeedSettings, HeliosSettings
from helios_orderflow.emulator import ServerHandle
from helios_orderflow.emulator.dialects.bybit import Bybit, trade_number
from helios_orderflow.live.bybit_book_check import check
from helios_orderflow.live.ccxt_edge import guard_frames
from helios_orderflow.live.feed import Feed
from helios_orderflow.live.venue_checks import frame_checks
from tests.exchange_fixtures import (
    FollowStats,
    assert_every_trade_once,
    assert_exact_and_converged,
    ccxt_client,
    compare_top,
    count_crossed,
    errors_of,
    exchange_process,
    freeze_after_a_push,
    printed_ccxt_config,
    replay_against_server,
    rest_book_results,
    synthetic_recording,
    synthetic_server,
    trades_published,
    watch_books,
    with_every_trade,
)
from tests.venue_dry_run import freqtrade_dry_run_opens_a_trade
from tests.waits import read_ws_until, wait_for

pytestmark = pytest.mark.integration

SPOT = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
LINEAR = ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
DEPTH = 50  # ccxt's default Bybit book depth, and what is compared per update


# ---- helpers --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def bybit_server(symbols: list[str], seed: int = 1, faults: str | None = None, **kw: Any) -> Iterator[ServerHandle]:
    with synthetic_server(symbols, seed=seed, faults=faults, venue="bybit", **kw) as handle:
        yield handle


def dialect(handle: ServerHandle) -> Bybit:
    d = handle.server.dialect
    assert isinstance(d, Bybit)
    return d


def client(handle: ServerHandle, market: str = "spot", guarded: bool = True, keep_alive_ms: int | None = None,
           ) -> Any:
    """The real ccxt.pro bybit client on the local exchange; ``guarded``: with Helios' frame guard and Bybit
    check, as the live feed runs it."""
    ex = ccxt_client(handle, market, keep_alive_ms=keep_alive_ms)
    if guarded:
        precheck, check = frame_checks("bybit", ex)
        guard_frames(ex, {}, None, check=check, precheck=precheck)
    return ex


def alive(ex: Any, symbol: str) -> bool:
    """Whether the connection carrying ``symbol``'s book is still up (the check fails it on a broken ``u``)."""
    return any(c.error is None and f"orderbook:{symbol}" in c.subscriptions for c in (ex.clients or {}).values())


def server_book_at_ts(handle: ServerHandle, symbol: str, ts_ms: int) -> tuple[list, list] | None:
    """The server's book right after the step whose messages carry ``ts`` = ``ts_ms``."""
    d = dialect(handle)

    def read() -> tuple[list, list] | None:
        u = d.u_at(symbol, ts_ms)
        return None if u is None else handle.server.log.books.get(symbol, {}).get(u)

    return handle.call(read)


@dataclass
class Follow(FollowStats):
    """What a client loop saw for one symbol; ``checks``: books compared with the server's book of the same
    step."""

    flagged: int = 0  # books whose frame the check failed (u jumped): not compared


async def follow_bybit_books(ex: Any, handle: ServerHandle, symbols: list[str], seconds: float,
                             depth: int = DEPTH) -> dict[str, Follow]:
    """Watch ``symbols`` for ``seconds``; compare every observed book's top ``depth`` with the server's book of
    the same step (found by the book's ``timestamp``, see the module docstring). Errors are counted and the
    watch retried, as a feed's loop does (``watch_books``; an unguarded ccxt's read loop dies on a malformed
    frame: a stall)."""

    def check(sym: str, ob: Any, st: Follow) -> None:
        bids, asks = ob["bids"][:depth], ob["asks"][:depth]
        count_crossed(st, bids, asks)
        if not alive(ex, sym):
            st.flagged += 1
            return
        server = server_book_at_ts(handle, sym, ob["timestamp"])
        if server is not None:
            compare_top(st, bids, asks, server, depth, f"ts {ob['timestamp']}")

    return await watch_books(ex, symbols, seconds, {s: Follow() for s in symbols}, check)


def topic_state(handle: ServerHandle, symbol: str, depth: int) -> tuple[int, list, list]:
    """(ts of the topic's last push, the server's top ``depth`` bids and asks) on the server's loop."""
    d = dialect(handle)

    def read() -> tuple[int, list, list]:
        st = handle.server.state(symbol)
        bids, asks = st.top_floats(depth)
        return d.book_topic(st, depth).ts_ms, bids, asks

    return handle.call(read)


async def converge_bybit(ex: Any, handle: ServerHandle, symbols: list[str], depth: int = DEPTH,
                         timeout: float = 20.0) -> dict[str, bool]:
    """Freeze the market, then call ``watch_order_book`` until ccxt's book has applied the topic's last
    message (its ``timestamp`` is that message's ``ts``) on a live connection; True per symbol when its top
    ``depth`` levels then equal the server's exactly. A client stuck behind (its last message lost) is made
    to subscribe again after 3 tries, as a feed's stall detection would."""
    freeze_after_a_push(handle)
    result = {}
    for sym in symbols:
        deadline = time.monotonic() + timeout
        ok, tries = False, 0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ex.watch_order_book(sym, depth if depth != DEPTH else None), timeout=1.0)
            ob = ex.orderbooks.get(sym) if ex.orderbooks else None
            ts, bids, asks = topic_state(handle, sym, depth)
            if ob is not None and ob["timestamp"] == ts and alive(ex, sym):
                ok = (ob["bids"][:depth], ob["asks"][:depth]) == (bids, asks)
                break
            tries += 1
            if tries % 3 == 0:
                await ex.close_ws_clients()
            await asyncio.sleep(0.05)
        result[sym] = ok
    return result


# ---- REST -----------------------------------------------------------------------------------------------------
def test_ccxt_reads_bybit_markets_books_candles_tickers_and_trades_over_rest():
    async def run(handle: ServerHandle) -> None:
        spot, linear = client(handle, "spot", guarded=False), client(handle, "linear", guarded=False)
        try:
            markets = await spot.load_markets()
            assert sorted(markets) == sorted(SPOT[:2])  # only what the local exchange lists: no inverse, option
            btc = markets["BTC/USDT"]
            assert (btc["id"], btc["spot"], btc["active"]) == ("BTCUSDT", True, True)
            assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 1e-05)
            assert (btc["limits"]["amount"]["min"], btc["limits"]["cost"]["min"]) == (1e-05, 5.0)
            perps = await linear.load_markets()
            assert sorted(perps) == ["BTC/USDT:USDT"]
            perp = perps["BTC/USDT:USDT"]
            assert (perp["id"], perp["swap"], perp["linear"], perp["settle"]) == ("BTCUSDT", True, True, "USDT")
            assert (perp["precision"]["price"], perp["precision"]["amount"], perp["limits"]["cost"]["min"]) == (
                0.1, 0.001, 100.0)
            await trades_published(handle, {"BTC/USDT": 10, "BTC/USDT:USDT": 10})  # the 10 trades read below
            handle.freeze()
            for ex, sym, limit in ((spot, "BTC/USDT", 200), (linear, "BTC/USDT:USDT", 500)):
                ob = await ex.fetch_order_book(sym, limit)
                _, bids, asks = handle.book(sym, limit)
                assert (ob["bids"], ob["asks"]) == (bids, asks) and len(bids) > 50
                assert ob["timestamp"] == handle.server.now_ms()
                candles = await ex.fetch_ohlcv(sym, "1m", limit=250)
                assert len(candles) == 250 and all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
                assert candles[-1][0] == handle.server.now_ms() // 60_000 * 60_000  # the open candle is now's
                since = candles[-100][0] + 1  # a mid-candle since: ccxt aligns it up, Bybit goes forward
                forward = await ex.fetch_ohlcv(sym, "1m", since=since, limit=20)
                assert [c[0] for c in forward] == [c[0] for c in candles[-99:-79]]
                five = await ex.fetch_ohlcv(sym, "5m", limit=30)
                assert len(five) == 30 and all(c[0] % 300_000 == 0 for c in five)
                ticker = await ex.fetch_ticker(sym)
                assert (ticker["bid"], ticker["ask"]) == (bids[0][0], asks[0][0])
                assert ticker["last"] == candles[-1][4]
                trades = await ex.fetch_trades(sym, limit=10)
                ids = [trade_number(t["id"]) for t in trades]
                assert len(ids) == 10 and sorted(ids) == list(range(ids[0], ids[0] + 10))
                assert ids[-1] == handle.trade_ids(sym)[-1]
            tickers = await spot.fetch_tickers()
            assert sorted(tickers) == ["BTC/USDT", "ETH/USDT"]
            assert await spot.fetch_time() == handle.server.now_ms()  # frozen: the server's clock stands still
            rates = await linear.fetch_funding_rate_history("BTC/USDT:USDT", limit=3)
            assert [r["fundingRate"] for r in rates] == [0.0001] * 3
            assert all(b["timestamp"] - a["timestamp"] == 8 * 3_600_000 for a, b in itertools.pairwise(rates))
        finally:
            await spot.close()
            await linear.close()

    with bybit_server(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"]) as handle:
        asyncio.run(run(handle))


def test_rest_answers_in_bybit_envelope_pages_linear_instruments_and_refuses_like_bybit():
    with bybit_server(["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]) as handle:
        base = f"{handle.url}/v5/market"
        get = lambda path, **q: requests.get(f"{base}/{path}", params=q, timeout=5)  # noqa: E731
        page1 = get("instruments-info", category="linear", limit=2).json()
        assert (page1["retCode"], page1["retMsg"], page1["retExtInfo"]) == (0, "OK", {})
        assert [i["symbol"] for i in page1["result"]["list"]] == ["BTCUSDT", "ETHUSDT"]
        page2 = get("instruments-info", category="linear", limit=2, cursor=page1["result"]["nextPageCursor"]).json()
        assert [i["symbol"] for i in page2["result"]["list"]] == ["SOLUSDT"]
        assert page2["result"]["nextPageCursor"] == ""
        assert get("instruments-info", category="linear", status="PreLaunch").json()["result"]["list"] == []
        assert get("instruments-info", category="inverse").json()["result"]["list"] == []
        spot = get("instruments-info", category="spot").json()["result"]["list"]
        assert [i["symbol"] for i in spot] == ["BTCUSDT"] and spot[0]["priceFilter"] == {"tickSize": "0.01"}
        book = get("orderbook", category="spot", symbol="BTCUSDT").json()["result"]
        assert len(book["b"]) == len(book["a"]) == 1  # Bybit spot's default depth
        assert set(book) == {"s", "b", "a", "ts", "u", "seq", "cts"}
        klines = get("kline", category="spot", symbol="BTCUSDT", interval="1", limit=3).json()["result"]["list"]
        assert int(klines[0][0]) > int(klines[1][0]) > int(klines[2][0])  # newest first, as Bybit
        bad = get("orderbook", category="spot", symbol="NOPEUSDT")
        assert bad.status_code == 200 and bad.json()["retCode"] == 10001
        assert get("kline", category="spot", symbol="BTCUSDT", interval="7").json()["retMsg"] == "Invalid period!"
        assert get("tickers", category="futures").json()["retMsg"] == "Illegal category"
        assert requests.get(f"{handle.url}/v5/position/list", timeout=5).status_code == 404
        state = requests.get(f"{handle.url}/helios/state", params={"symbol": "BTC/USDT"}, timeout=5).json()
        assert state["venue"] == "bybit" and state["lastUpdateId"] == handle.book("BTC/USDT")[0]


# ---- the websocket protocol, read raw --------------------------------------------------------------------------
def apply(book: dict[float, float], levels: list[list[str]]) -> None:
    for p, q in levels:
        if float(q) == 0:
            book.pop(float(p), None)
        else:
            book[float(p)] = float(q)


def test_websocket_acks_pings_and_sends_top_n_snapshots_and_deltas_numbered_by_u():
    async def run(handle: ServerHandle) -> tuple[list[dict], dict[str, list[dict]]]:
        replies: list[dict] = []
        frames: dict[str, list[dict]] = {}

        def take(d: dict) -> None:
            (frames.setdefault(d["topic"], []) if "topic" in d else replies).append(d)

        async with aiohttp.ClientSession() as session, session.ws_connect(f"{handle.url}/v5/public/spot") as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "req_id": "a1", "args": [
                "orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT",
                "kline.1.BTCUSDT"]}))
            await ws.send_str(json.dumps({"op": "subscribe", "req_id": "a2", "args": ["orderbook.30.BTCUSDT"]}))
            await ws.send_str(json.dumps({"op": "subscribe", "req_id": "a3", "args": ["orderbook.50.NOPEUSDT"]}))
            await ws.send_str(json.dumps({"op": "ping", "req_id": "p1"}))
            await ws.send_str(json.dumps({"op": "dance"}))
            def done() -> bool:  # the five replies, and enough of every topic for the checks below
                n = {t: len(f) for t, f in frames.items()}
                return (len(replies) >= 5 and n.get("orderbook.50.BTCUSDT", 0) >= 30
                        and sum(len(f["data"]) for f in frames.get("publicTrade.BTCUSDT", [])) >= 5
                        and all(n.get(t) for t in ("orderbook.1.BTCUSDT", "tickers.BTCUSDT", "kline.1.BTCUSDT")))

            await read_ws_until(ws, lambda text: take(json.loads(text)), done, 60,
                                "five replies, 30 book messages, 5 trades, a ticker and a candle")
            handle.freeze()  # no more steps: what follows are the frames already on their way
            await ws.send_str(json.dumps({"op": "unsubscribe", "req_id": "u1", "args": ["publicTrade.BTCUSDT"]}))
            while not replies or replies[-1].get("op") != "unsubscribe":
                take(json.loads((await ws.receive(timeout=2)).data))
        return replies, frames

    with bybit_server(["BTC/USDT"]) as handle:
        replies, frames = asyncio.run(run(handle))
        last_u50, top_bids, top_asks = handle.book("BTC/USDT", 50)
        ts50 = dialect(handle).book_topic(handle.server.state("BTC/USDT"), 50).ts_ms
    ack, bad_depth, bad_symbol, pong, invalid, unsub = replies
    conn_id = ack["conn_id"]
    assert ack == {"success": True, "ret_msg": "subscribe", "conn_id": conn_id, "req_id": "a1", "op": "subscribe"}
    assert (bad_depth["success"], bad_depth["ret_msg"]) == (False, "error:handler not found,topic:orderbook.30.BTCUSDT")
    assert bad_symbol["success"] is False and bad_symbol["req_id"] == "a3"
    assert pong == {"success": True, "ret_msg": "pong", "conn_id": conn_id, "req_id": "p1", "op": "ping"}
    assert invalid["success"] is False and invalid["ret_msg"] == "error:invalid op"
    assert unsub == {"success": True, "ret_msg": "", "conn_id": conn_id, "req_id": "u1", "op": "unsubscribe"}

    book = frames["orderbook.50.BTCUSDT"]
    assert book[0]["type"] == "snapshot" and all(f["type"] == "delta" for f in book[1:])
    assert len(book[0]["data"]["b"]) == len(book[0]["data"]["a"]) == 50
    assert len(book) >= 30  # ~10 a second
    assert all(b["data"]["u"] == a["data"]["u"] + 1 for a, b in itertools.pairwise(book))
    assert all(b["data"]["seq"] > a["data"]["seq"] for a, b in itertools.pairwise(book))
    assert set(book[1]) == {"topic", "type", "ts", "data", "cts"} and set(book[1]["data"]) == {"s", "b", "a", "u",
                                                                                                 "seq"}
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    for f in book:  # the snapshot plus the deltas hold exactly the server's top 50, never more
        apply(bids, f["data"]["b"])
        apply(asks, f["data"]["a"])
        assert len(bids) <= 50 and len(asks) <= 50
    assert (book[-1]["data"]["u"], book[-1]["ts"]) == (last_u50, ts50)  # every message up to the freeze came
    assert [list(x) for x in sorted(bids.items(), reverse=True)] == top_bids
    assert [list(x) for x in sorted(asks.items())] == top_asks
    level1 = frames["orderbook.1.BTCUSDT"]
    assert all(f["type"] == "snapshot" and len(f["data"]["b"]) <= 1 for f in level1)  # Bybit: snapshots only
    trades = [t for f in frames["publicTrade.BTCUSDT"] for t in f["data"]]
    assert len(trades) >= 5 and all(int(b["i"]) == int(a["i"]) + 1 for a, b in itertools.pairwise(trades))
    assert set(trades[0]) == {"T", "s", "S", "v", "p", "i", "BT", "RPI", "seq"} and trades[0]["S"] in ("Buy", "Sell")
    ticker = frames["tickers.BTCUSDT"][0]
    assert ticker["type"] == "snapshot" and "usdIndexPrice" in ticker["data"] and "bid1Price" not in ticker["data"]
    k = frames["kline.1.BTCUSDT"][-1]["data"][0]
    assert k["interval"] == "1" and k["start"] % 60_000 == 0 and k["end"] == k["start"] + 59_999


# ---- ccxt follows the books for a minute -----------------------------------------------------------------------
FOLLOW_S = 60.0


@pytest.mark.slow
def test_ccxt_follows_three_spot_and_three_linear_books_for_a_minute_exactly():
    """60 s, 3 spot + 3 linear symbols, one ccxt client per market (with Helios' check, which must never
    fire): every book ccxt resolves equals the server's top 50 of the same step (matched by the book's
    ``timestamp``, see the module docstring; top 50, not 100, because the topic is ``orderbook.50``), and
    every trade arrives once and in order.

    Lower bound on checks: the market steps 10 times a second and nearly every step changes the top 50, so
    60 s give up to 600 books per symbol; at least 300 are required (the watch loop may take two messages in
    one wake-up, and a step may leave the top 50 as it was)."""
    markets = {"spot": SPOT, "linear": LINEAR}

    async def run(handle: ServerHandle) -> tuple[dict, dict, dict, dict]:
        clients = {m: client(handle, m) for m in markets}

        async def books() -> tuple[dict, dict]:
            followed = await asyncio.gather(*(follow_bybit_books(clients[m], handle, syms, FOLLOW_S - 0.5)
                                              for m, syms in markets.items()))
            return (dict(zip(markets, followed, strict=True)),
                    {m: await converge_bybit(clients[m], handle, syms) for m, syms in markets.items()})

        try:
            for ex in clients.values():
                await ex.load_markets()
            (stats, converged), got, sent = await with_every_trade(
                handle, [(clients[m], syms) for m, syms in markets.items()], books, trade_id=trade_number)
        finally:
            for ex in clients.values():
                await ex.close()
        return stats, converged, got, sent

    t0 = time.monotonic()
    with bybit_server(SPOT + LINEAR, seed=9) as handle:
        stats, converged, got, sent = asyncio.run(run(handle))
    took = time.monotonic() - t0
    report = {}
    for m, symbols in markets.items():
        for sym in symbols:
            s = stats[m][sym]
            assert s.mismatches == 0, (sym, s.first_mismatch)
            assert s.flagged == 0 and not s.errors, (sym, s.flagged, s.errors)
            assert s.checks >= FOLLOW_S * 10 / 2, (sym, s.checks)
        assert converged[m] == {s: True for s in symbols}
    trades = assert_every_trade_once(got, sent, FOLLOW_S * 3, in_order=True)
    for m, symbols in markets.items():
        for sym in symbols:
            report[sym] = (stats[m][sym].checks, stats[m][sym].mismatches, trades[sym])
    print(f"\nbybit follow {took:.0f} s: (checks, mismatches, trades) {report}")


# ---- faults ---------------------------------------------------------------------------------------------------
FAULT_SYMS = ["BTC/USDT", "ETH/USDT"]


@dataclass
class FaultRun:
    guarded: dict[str, Follow]
    raw: dict[str, Follow]
    converged: dict[str, bool]
    counts: dict[str, int]
    subscriptions: int
    rest_errors: list[str]


async def run_fault(spec: str, seconds: float = 6.0, keep_alive_ms: int | None = None, rest_calls: int = 0,
                    raw: bool = False) -> FaultRun:
    """A server with ``spec`` (after 1 s) followed for ``seconds`` by a ccxt client with Helios' check and,
    with ``raw``, a second one without (ccxt alone); then ``rest_calls`` REST book requests, and the checked
    client converged on the frozen market."""
    with bybit_server(FAULT_SYMS, seed=3, faults=f"{spec},after=1") as handle:
        ex = client(handle, keep_alive_ms=keep_alive_ms)
        ex_raw = client(handle, guarded=False) if raw else None
        try:
            await ex.load_markets()
            if ex_raw is not None:
                await ex_raw.load_markets()
            follows = [follow_bybit_books(ex, handle, FAULT_SYMS, seconds)]
            if ex_raw is not None:
                follows.append(follow_bybit_books(ex_raw, handle, FAULT_SYMS, seconds))
            followed = await asyncio.gather(*follows)
            rest_errors = [r for r in await rest_book_results(ex, "BTC/USDT", 50, rest_calls) if r != "ok"]
            converged = await converge_bybit(ex, handle, FAULT_SYMS)
            counts = handle.fault_counts()
            subscriptions = sum(v for k, v in handle.log.subscriptions.items() if k.startswith("orderbook."))
        finally:
            await ex.close()
            if ex_raw is not None:
                await ex_raw.close()
    return FaultRun(followed[0], followed[1] if raw else {}, converged, counts, subscriptions, rest_errors)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["drop", "reorder", "gap"])
def test_broken_u_sequence_is_silent_in_ccxt_and_caught_by_the_helios_check(kind: str):
    """ccxt alone applies the deltas around a lost, late or skipped ``u`` and its book goes wrong without an
    error; with Helios' check every break fails the connection (``ChecksumError``), ccxt subscribes again
    (a fresh snapshot) and every book not flagged is the server's."""
    r = asyncio.run(run_fault(f"{kind}=1/15", seconds=7.0, raw=True))
    print(f"\nbybit {kind}: fired {r.counts[kind]}; checked client {dict(errors_of(r.guarded))}, flagged "
          f"{sum(s.flagged for s in r.guarded.values())}, checks {sum(s.checks for s in r.guarded.values())}, "
          f"mismatches 0; ccxt alone: mismatches {sum(s.mismatches for s in r.raw.values())} of "
          f"{sum(s.checks for s in r.raw.values())}, errors {dict(errors_of(r.raw))}")
    assert r.counts[kind] >= 4
    errors = errors_of(r.guarded)
    assert errors.get("ChecksumError", 0) >= 2, errors  # the check saw the breaks ...
    assert r.subscriptions >= 2 * len(FAULT_SYMS) + 2  # ... and ccxt re-subscribed (fresh snapshots)
    # The check runs before ccxt applies a frame: the broken message never reaches a book, so no book is flagged.
    assert sum(s.flagged for s in r.guarded.values()) == 0
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)
    # ccxt alone: no error at all, and books that are not the server's
    assert errors_of(r.raw) == Counter()
    if kind != "gap":  # a skipped u loses no level: ccxt's book is right, only the sequence said it broke
        assert sum(s.mismatches for s in r.raw.values()) >= 1


@pytest.mark.slow
def test_a_repeated_delta_changes_nothing_and_is_let_through():
    r = asyncio.run(run_fault("dup=1/10"))
    assert r.counts["dup"] >= 4
    assert errors_of(r.guarded) == Counter()  # the check passes a repeated u: the same absolute sizes again
    assert r.subscriptions == len(FAULT_SYMS)  # never a resubscription
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)


@pytest.mark.slow
def test_malformed_frame_fails_the_connection_and_the_book_comes_back():
    r = asyncio.run(run_fault("malformed=1/20", seconds=8.0))
    assert r.counts["malformed"] >= 2
    assert errors_of(r.guarded).get("NetworkError", 0) >= 1  # the guard turns ccxt's parse failure into it
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)


@pytest.mark.slow
def test_crossed_book_is_seen_by_ccxt_then_uncrossed():
    r = asyncio.run(run_fault("crossed=1/40", seconds=8.0))
    assert r.counts["crossed"] >= 2
    assert sum(s.crossed_seen for s in r.guarded.values()) >= 1
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)


@pytest.mark.slow
def test_server_disconnects_make_ccxt_raise_subscribe_again_and_converge():
    r = asyncio.run(run_fault("disconnect=2", seconds=7.0))
    assert r.counts["disconnect"] >= 2
    assert errors_of(r.guarded).get("NetworkError", 0) >= 2
    assert r.subscriptions >= 3 * len(FAULT_SYMS)
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)


@pytest.mark.slow
def test_unanswered_text_pings_time_the_ccxt_connection_out():
    r = asyncio.run(run_fault("noping=1.5", seconds=7.0, keep_alive_ms=500))
    assert errors_of(r.guarded).get("RequestTimeout", 0) >= 1, errors_of(r.guarded)
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "error"), [("rest429=1/2", "RateLimitExceeded"),
                                               ("rest5xx=1/2", "ExchangeNotAvailable")])
def test_rest_errors_reach_ccxt_as_its_exception_and_books_still_converge(spec: str, error: str):
    r = asyncio.run(run_fault(f"{spec},drop=1/30", seconds=5.0, rest_calls=4))
    assert r.rest_errors == [error, error], r.rest_errors  # every 2nd of 4 orderbook requests
    assert_exact_and_converged(r.guarded, r.converged, FAULT_SYMS)


# ---- ccxt keeps one book per symbol: orderbook.1 beside the deep book --------------------------------------
def test_watching_bids_asks_beside_the_book_overwrites_ccxts_one_book_and_the_check_says_so():
    """ccxt 4.5.90's ``watch_bids_asks`` subscribes ``orderbook.1`` and ``watch_order_book`` ``orderbook.50``;
    ``handle_order_book`` writes both into ``ex.orderbooks[symbol]``, and Bybit sends ``orderbook.1`` as
    snapshots only: each one resets the deep book to one level. Helios' check reports it (so the feed
    declares it instead of publishing that book); the feed must not watch both (``helios.feed.bbo`` false
    on Bybit until the runner stops doing it)."""

    async def run(handle: ServerHandle) -> tuple[int, list[str]]:
        ex = client(handle, guarded=False)
        problems: list[str] = []
        try:
            await ex.load_markets()
            await ex.watch_order_book("BTC/USDT")
            one_level = 0
            deadline = time.monotonic() + 60  # a bound on a hang
            while one_level < 5:
                assert time.monotonic() < deadline, f"only {one_level} one-level books in 60 s"
                await ex.watch_bids_asks(["BTC/USDT"])
                one_level += len(ex.orderbooks["BTC/USDT"]["bids"]) == 1
            # the same frames through the check, as the feed's frame guard runs it
            ex2 = client(handle, guarded=False)
            try:
                async with aiohttp.ClientSession() as session, session.ws_connect(
                        f"{handle.url}/v5/public/spot") as ws:
                    await ws.send_str(json.dumps({"op": "subscribe", "args": [
                        "orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT"]}))
                    for _ in range(20):
                        problem = check(ex2, (await ws.receive(timeout=2)).data)
                        if problem:
                            problems.append(problem)
            finally:
                await ex2.close()
        finally:
            await ex.close()
        return one_level, problems

    with bybit_server(["BTC/USDT"]) as handle:
        one_level, problems = asyncio.run(run(handle))
    assert one_level >= 5  # ccxt's BTC/USDT book, which watch_order_book returns, had one level per side
    assert problems and "both write ccxt's one book of BTCUSDT" in problems[0]


# ---- the Helios live feed ----------------------------------------------------------------------------------------
#: The feed on Bybit runs without the best bid/offer stream: see the test above.
FEED_SETTINGS = HeliosSettings(feed=FeedSettings(bbo=False))
FEED_DEPTH = FEED_SETTINGS.feed.book_depth  # 1000: the feed subscribes orderbook.1000


def feed_converged(handle: ServerHandle, feed: Feed, ex: Any, symbols: list[str]) -> bool:
    """On a frozen market: the feed's ccxt book has the topic's last message and equals the server's whole
    book, and the feed published the same best bid and ask."""
    for sym in symbols:
        ts, bids, asks = topic_state(handle, sym, FEED_DEPTH)
        ob = (ex.orderbooks or {}).get(sym)
        if ob is None or ob["timestamp"] != ts or (ob["bids"][:], ob["asks"][:]) != (bids, asks):
            return False
        published = feed.state.get(sym)
        if (published.best_bid, published.best_ask) != (bids[0][0], asks[0][0]):
            return False
    return True


@pytest.mark.slow
def test_feed_stays_healthy_over_100_book_updates_a_pair_and_its_recording_rebuilds_the_servers_books(
        tmp_path: Path):
    """``Feed("bybit", 3 pairs)``: healthy at every look while each pair takes 100 book updates and 60 trades
    (~20 s), with no gap, error or resync (the check never fires), trades in order; every recorded book state
    equals the server's top 50 of the same step (by ``ts``), and after freezing, the feed's book is the
    server's whole book."""
    boxes: list[Any] = []
    with bybit_server(SPOT, seed=11, record_history=100_000) as handle:
        feed = Feed("bybit", SPOT, FEED_SETTINGS, ccxt_config=handle.ccxt_config(), record_to=tmp_path / "rec",
                    engine=False, on_exchange=boxes.append)
        feed.start()
        try:
            wait_for(lambda: all(feed.state.is_healthy(s) for s in SPOT), 30, "all pairs healthy")
            unhealthy = 0

            def look() -> None:
                nonlocal unhealthy
                unhealthy += sum(not feed.state.is_healthy(s) for s in SPOT)

            def enough() -> bool:  # what is checked below: 50 book states compared, 50 trades a pair
                return all(feed.state.get(s).health.book_updates >= 100 and feed.state.get(s).health.trades >= 60
                           for s in SPOT)

            wait_for(enough, 120, "100 book updates and 60 trades a pair", every=look, poll_s=0.25)
            freeze_after_a_push(handle)
            wait_for(lambda: feed_converged(handle, feed, boxes[0], SPOT), 10, "the feed's book = the server's")
            health = {s: feed.state.get(s).health for s in SPOT}
        finally:
            feed.stop()
        sent = {s: handle.trade_ids(s) for s in SPOT}
        final = {s: handle.book(s, FEED_DEPTH) for s in SPOT}
        syncs, compared, trade_events = replay_against_server(
            tmp_path / "rec", SPOT, lambda ev: server_book_at_ts(handle, ev.symbol, ev.ts_us // 1000), DEPTH)
        trades = {s: [int(t.trade_id) for t in trade_events[s]] for s in SPOT}
    assert unhealthy == 0
    for s in SPOT:
        h = health[s]
        assert (h.gaps, h.reconnects, h.resyncs, h.errors) == (0, 0, 0, 0) and h.trades > 0
        assert compared[s] >= 50, (s, compared[s])  # of the >= 100 book updates waited for
        _, bids, asks = final[s]
        assert [list(x) for x in syncs[s].book.bids.top(FEED_DEPTH)] == bids
        assert [list(x) for x in syncs[s].book.asks.top(FEED_DEPTH)] == asks
        ids = trades[s]
        first = sent[s].index(ids[0])
        assert ids == sent[s][first: first + len(ids)] and len(ids) >= 50, (s, len(ids))
    print(f"\nbybit feed: book states compared {dict(compared)}, trades {({s: len(t) for s, t in trades.items()})}")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["drop", "reorder", "gap"])
def test_feed_declares_a_gap_on_a_broken_u_resyncs_and_is_exact_once_the_fault_clears(kind: str):
    boxes: list[Any] = []
    with bybit_server(SPOT, seed=5, faults=f"{kind}=1/20,after=2") as handle:
        feed = Feed("bybit", SPOT, FEED_SETTINGS, ccxt_config=handle.ccxt_config(), engine=False,
                    on_exchange=boxes.append)
        feed.start()
        try:
            wait_for(lambda: all(feed.state.get(s).health.gaps >= 1 and feed.state.get(s).health.resyncs >= 1
                                 for s in SPOT), 30, f"every pair to declare a gap and resync ({kind})")
            handle.call(handle.server.faults.rates.clear)  # the fault clears; the market goes on
            wait_for(lambda: all(feed.state.is_healthy(s) for s in SPOT), 15, "all pairs healthy again")
            # five more pushes of orderbook.1000 (1 s): the message after a lost last one shows its jump and the
            # feed resyncs, healthy again after it
            pushed = {s: feed.state.get(s).health.book_updates for s in SPOT}
            wait_for(lambda: all(feed.state.get(s).health.book_updates >= pushed[s] + 5 and feed.state.is_healthy(s)
                                 for s in SPOT), 15, "five more book updates of every pair, healthy")
            freeze_after_a_push(handle)
            wait_for(lambda: feed_converged(handle, feed, boxes[0], SPOT), 15, "the feed's book = the server's")
            health = {s: feed.state.get(s).health for s in SPOT}
            counts = handle.fault_counts()
        finally:
            feed.stop()
    assert counts[kind] >= 3
    print(f"\nbybit feed {kind}: fired {counts[kind]}, gaps/resyncs "
          f"{ {s: (health[s].gaps, health[s].resyncs) for s in SPOT} }")
    for s in SPOT:
        assert health[s].gaps >= 1 and health[s].resyncs >= 1, (s, health[s])
        assert "u jumped" in (health[s].last_error or ""), health[s].last_error


# ---- helios exchange --venue bybit ----------------------------------------------------------------------------
@pytest.mark.slow
def test_helios_exchange_venue_bybit_serves_synthetic_and_replayed_markets_and_prints_its_ccxt_config(
        tmp_path: Path):
    rec = synthetic_recording(tmp_path / "rec", "BTC/USDT", int(time.time() * 1e6) - 120_000_000, 120_000_000)

    async def probe(config: dict[str, Any], symbol: str, base: str) -> tuple[int, int, int]:
        ex = ccxtpro.bybit(dict(config, enableRateLimit=False))
        try:
            await ex.load_markets()
            ob = await ex.watch_order_book(symbol)
            assert ob["bids"] and ob["asks"] and ob["bids"][0][0] < ob["asks"][0][0]
            async with aiohttp.ClientSession() as session:
                ws_url = config["urls"]["api"]["ws"]["public"]["linear" if ":" in symbol else "spot"]
                async with session.ws_connect(ws_url) as ws:
                    await ws.send_str(json.dumps({"op": "subscribe", "args": [f"orderbook.50.{ex.market_id(symbol)}"]}))
                    await ws.receive(timeout=3)  # the ack
                    u_before = json.loads((await ws.receive(timeout=3)).data)["data"]["u"]
                async with session.get(f"{base}/helios/state", params={"symbol": symbol}) as r:
                    state = await r.json()
            assert state["venue"] == "bybit"
            return u_before, state["lastUpdateId"], state["next_trade_id"]
        finally:
            await ex.close()

    runs = {"synthetic": (["--synthetic", "--symbols", "BTC/USDT", "ETH/USDT:USDT", "--seed", "2"],
                          {"spot": "BTC/USDT", "linear": "ETH/USDT:USDT"}),
            "replay": (["--replay", str(rec), "--speed", "4"], {"spot": "BTC/USDT"})}
    for name, (args, symbols) in runs.items():
        with exchange_process("bybit", [*args, "--history-minutes", "30"], tmp_path / f"{name}.log",
                              list(symbols.values())) as proc:
            text = proc.log_path.read_text()
            assert "as bybit (REST" in text and "exchange.name bybit" in text, text
            for market, symbol in symbols.items():
                config = printed_ccxt_config(proc, "bybit", market)
                assert config == proc.ccxt_config(market)
                u_before, u_state, next_trade = asyncio.run(probe(config, symbol, proc.url))
                # /helios/state names Bybit's u of orderbook.50 (counted from 1), not the market's own ids
                assert 1 <= u_before <= u_state < 1_000_000, (name, symbol, u_before, u_state)
                assert next_trade > 1


@pytest.mark.slow
def test_twelve_spot_pairs_all_get_trades_although_bybit_refuses_more_than_ten_args_a_subscription(tmp_path: Path):
    """Bybit spot refuses a subscribe request with more than 10 args ("args size >10", as the real venue); ccxt
    4.5.90 sends one multi-symbol trades watch as one request, so a feed following 11 pairs or more got no trade
    at all (found by the 20-pair benchmark). The feed splits its trade watchers into groups of 10: every one of
    12 pairs gets its trades, with no error."""
    pairs = [f"{b}/USDT" for b in ("BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "LTC", "LINK", "AVAX", "DOT",
                                   "TRX")]
    with bybit_server(pairs, seed=3) as handle:
        feed = Feed("bybit", pairs, FEED_SETTINGS, ccxt_config=handle.ccxt_config(), engine=False)
        feed.start()
        try:
            wait_for(lambda: all((st := feed.state.get(s)) is not None and st.health.trades >= 5 for s in pairs),
                     60, "five trades on every pair")
            health = {s: feed.state.get(s).health for s in pairs}
        finally:
            feed.stop()
        subscribed = {k for k in handle.log.subscriptions if k.startswith("publicTrade.")}
    assert subscribed == {"publicTrade." + s.replace("/", "") for s in pairs}
    assert all(h.errors == 0 and h.last_error is None for h in health.values()), health


# ---- Freqtrade ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_freqtrade_dry_run_with_helios_strategy_opens_a_trade_on_bybit_spot(tmp_path: Path):
    got = freqtrade_dry_run_opens_a_trade("bybit", tmp_path)
    rest, subs = got["rest"], got["subscriptions"]
    assert rest["/v5/market/instruments-info"] >= 1 and rest["/v5/market/kline"] >= 2  # markets, each pair's candles
    assert {"kline.1.BTCUSDT", "kline.1.ETHUSDT"} <= set(subs)  # Freqtrade's candles by websocket
    assert {"orderbook.1000.BTCUSDT", "publicTrade.BTCUSDT"} <= set(subs)  # the Helios feed
    print(f"\nbybit freqtrade: {got['trade']} after {got['seconds']:.0f} s; REST {rest}")
