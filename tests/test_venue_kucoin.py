"""The local exchange speaks KuCoin spot as ccxt 4.5.90's ``kucoin`` client and the live feed read it.

How ccxt follows a KuCoin book (``pro/kucoin.py``): ``watch_order_book`` negotiates a websocket through
``POST /api/v1/bullet-public``, subscribes ``/market/level2:BTC-USDT``, caches the first messages, fetches a REST
snapshot (``level2_100``: without credentials ccxt takes the public 100-level book whatever the limit) and joins
the cached ``trade.l2update`` messages to it by ``sequenceStart``/``sequenceEnd``. Its books carry KuCoin's
sequence as ``nonce``, so every observed book is compared with the server's book at that id (``book_at``).

Two things ccxt does not do, which the tests show rather than hide:

- it never checks that a message's ``sequenceStart`` follows the book's nonce once it is synced: a lost or late
  message leaves the book silently wrong (``test_broken_chains_...``). Helios makes the check itself
  (``live/kucoin_book_check.py``): ``test_the_feed_declares_a_kucoin_chain_break_as_a_gap``, and every fault on
  the feed in tests/test_venue_feed_faults.py;
- its book starts from 100 levels, so a level deeper than the snapshot's 100th that no message has touched
  since is missing from it when the price comes to it: ccxt's book equals the server's exactly within the price
  range the last snapshot covered (``covered``), not over any fixed depth. The comparisons here are made over
  that range (the whole top 100 while the price stays within it) and count the full top-100 matches apart.

ccxt also keeps KuCoin's per-change sequence as a third element of each level it inserted (``[price, size,
seq]``); comparisons take ``[:2]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import pytest

from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator import ServerHandle
from helios_orderflow.emulator.dialects import dialect_class
from helios_orderflow.emulator.instruments import instrument
from helios_orderflow.live import kucoin_book_check
from helios_orderflow.live.ccxt_edge import guard_frames
from tests.exchange_fixtures import (
    FOLLOW_S,
    MIN_CHECKS,
    FollowStats,
    assert_every_trade_once,
    assert_exact_and_converged,
    assert_serves,
    ccxt_client,
    count_crossed,
    errors_of,
    exchange_process,
    feed_declares_gaps,
    feed_rebuilds_the_servers_books,
    rest_book_results,
    synthetic_recording,
    synthetic_server,
    trades_published,
    watch_books,
    with_every_trade,
)
from tests.venue_dry_run import freqtrade_dry_run_opens_a_trade
from tests.waits import HANG_S, beside, read_ws_until

pytestmark = pytest.mark.integration

VENUE = "kucoin"
PAIRS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
#: the deepest book ccxt's kucoin ``watch_order_book`` accepts a limit for (None, 5, 20, 50 or 100)
FEED_DEPTH = 100
STALL_S = 3.0


def wire(symbol: str) -> str:
    return dialect_class(VENUE).wire(instrument(symbol))


# ---- what the client saw ------------------------------------------------------------------------------------
def levels(side: list[list[float]], depth: int = 100) -> list[list[float]]:
    return [lvl[:2] for lvl in side[:depth]]


def covered(side: list[list[float]], bound: float, bids: bool) -> list[list[float]]:
    """The levels of ``side`` within the snapshot's range: bids at or above its lowest bid, asks at or below its
    highest ask."""
    return [lvl for lvl in side if (lvl[0] >= bound if bids else lvl[0] <= bound)]


def track_snapshots(ex: Any) -> dict[str, tuple[float, float]]:
    """Record per symbol the price range each REST snapshot ccxt fetches covers: (lowest bid, highest ask);
    a side shorter than 100 levels covers the whole side. ccxt applies the last snapshot it fetched."""
    ranges: dict[str, tuple[float, float]] = {}
    fetch = ex.fetch_order_book

    async def fetch_and_note(symbol: str, limit: int | None = None, params: dict | None = None) -> Any:
        ob = await fetch(symbol, limit, params or {})
        bids, asks = ob["bids"], ob["asks"]
        ranges[symbol] = (bids[-1][0] if len(bids) >= 100 else -math.inf,
                          asks[-1][0] if len(asks) >= 100 else math.inf)
        return ob

    ex.fetch_order_book = fetch_and_note
    return ranges


@dataclass
class Follow(FollowStats):
    """What a client loop saw for one pair; ``checks``: books compared with the server's at the same sequence,
    over the snapshot's range."""

    full_matches: int = 0  # ... of which the whole top 100 equals the server's
    covered_levels: int = 0  # levels per side compared, summed over the checks


def compare(handle: ServerHandle, sym: str, ob: Any, ranges: dict[str, tuple[float, float]], st: Follow) -> None:
    server = handle.book_at(sym, ob["nonce"])
    if server is None or sym not in ranges:
        return
    floor, ceiling = ranges[sym]
    bids, asks = levels(ob["bids"]), levels(ob["asks"])
    count_crossed(st, bids, asks)
    st.checks += 1
    mine = (covered(bids, floor, True), covered(asks, ceiling, False))
    theirs = (covered(server[0], floor, True), covered(server[1], ceiling, False))
    st.covered_levels += min(len(theirs[0]), len(theirs[1]))
    st.full_matches += (bids, asks) == (server[0], server[1])
    if mine != theirs:
        st.mismatches += 1
        if not st.first_mismatch:
            st.first_mismatch = f"nonce {ob['nonce']}: client {mine[0][:2]} {mine[1][:2]} server {theirs[0][:2]} " \
                                f"{theirs[1][:2]}"


async def follow_books(ex: Any, handle: ServerHandle, symbols: list[str], seconds: float,
                       ranges: dict[str, tuple[float, float]]) -> dict[str, Follow]:
    """Watch ``symbols`` for ``seconds``, comparing ccxt's book with the server's after every update over the
    snapshot's range (``watch_books``: errors are counted and the watch called again, as a feed loop does)."""
    return await watch_books(ex, symbols, seconds, {s: Follow() for s in symbols},
                             lambda sym, ob, st: compare(handle, sym, ob, ranges, st))


async def converge(ex: Any, handle: ServerHandle, symbols: list[str], ranges: dict[str, tuple[float, float]],
                   timeout: float = 20.0) -> dict[str, bool]:
    """Freeze the market once ccxt's books are synced, call ``watch_order_book`` until each has the server's
    last sequence; True per pair when it then equals the server's over the snapshot's range. Left frozen.

    ccxt fetches KuCoin's snapshot only after 6 messages of a new subscription, which a frozen market never
    sends: a pair still syncing (after a fault) lets the market run again and is tried once more."""
    deadline = time.monotonic() + timeout
    result = dict.fromkeys(symbols, False)
    pending = list(symbols)
    while pending and time.monotonic() < deadline:
        handle.resume()
        for sym in pending:
            with contextlib.suppress(Exception):  # a pair that cannot sync now is tried again below
                await asyncio.wait_for(ex.watch_order_book(sym), timeout=STALL_S)
        handle.freeze()
        for sym in list(pending):
            for _ in range(20):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ex.watch_order_book(sym), timeout=0.1)
                ob = ex.orderbooks.get(sym) if ex.orderbooks else None
                last_id, bids, asks = handle.book(sym, 100)
                if ob is not None and ob["nonce"] == last_id and sym in ranges:
                    floor, ceiling = ranges[sym]
                    result[sym] = (covered(levels(ob["bids"]), floor, True),
                                   covered(levels(ob["asks"]), ceiling, False)) == (
                        covered(bids, floor, True), covered(asks, ceiling, False))
                    pending.remove(sym)
                    break
    return result


# ---- the check Helios must make -----------------------------------------------------------------------------
#: KuCoin's chain rule as the feed applies it (``live/kucoin_book_check.py``), used by the ccxt-level tests too.
proposed_kucoin_book_check = kucoin_book_check.check


def checked_client(handle: ServerHandle) -> Any:
    """ccxt's kucoin client with the frame guard Helios puts on every client and the proposed chain check, run
    BEFORE ccxt handles each frame: a broken chain fails the connection (``ChecksumError``) before ccxt applies
    the message and resolves a wrong book. (``guard_frames`` runs a venue check after ccxt handled the frame,
    right for a checksum of the resulting book but one wrong book late for a chain: see the feed tests.)"""
    ex = ccxt_client(handle)
    guard_frames(ex, {})
    make = ex.client

    def client(url: str) -> Any:
        c = make(url)
        if not getattr(c, "_helios_chain_checked", False):
            handle_frame = c.handle_text_or_binary_message

            def checked(data: Any, _handle: Any = handle_frame, _c: Any = c) -> None:
                try:
                    problem = proposed_kucoin_book_check(ex, data)
                except ValueError:  # not JSON: the frame guard fails the connection when ccxt cannot read it
                    problem = None
                if problem is not None:
                    _c.on_error(ccxt.ChecksumError(problem))
                    return
                _handle(data)

            c.handle_text_or_binary_message = checked
            c._helios_chain_checked = True
        return c

    ex.client = client
    return ex


# ---- raw websocket ------------------------------------------------------------------------------------------
async def bullet(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.post(f"{url}/api/v1/bullet-public") as resp:
        body = await resp.json()
    assert body["code"] == "200000"
    return dict(body["data"])


async def raw_level2(url: str, stop: asyncio.Event, symbol: str = "BTC-USDT") -> list[dict[str, Any] | str]:
    """Every ``/market/level2`` frame until ``stop`` is set (parsed; a frame that is not JSON as its text)."""
    out: list[dict[str, Any] | str] = []

    def take(text: str) -> None:
        try:
            d = json.loads(text)
        except ValueError:
            out.append(text)
            return
        if d.get("subject") == "trade.l2update":
            out.append(d)

    async with aiohttp.ClientSession() as session:
        b = await bullet(session, url)
        server = b["instanceServers"][0]
        async with session.ws_connect(f"{server['endpoint']}?token={b['token']}&connectId=raw") as ws:
            await ws.send_str(json.dumps({"id": "1", "type": "subscribe", "topic": f"/market/level2:{symbol}",
                                          "response": True}))
            await read_ws_until(ws, take, stop.is_set, HANG_S, "the followers to finish", closed_ok=True)
    return out


def chain(frames: list[dict[str, Any] | str]) -> list[tuple[int, int]]:
    return [(f["data"]["sequenceStart"], f["data"]["sequenceEnd"]) for f in frames if isinstance(f, dict)]


def breaks(ids: list[tuple[int, int]]) -> int:
    return sum(1 for (_, e0), (s1, e1) in itertools.pairwise(ids) if s1 != e0 + 1 and e1 > e0)


def repeats(ids: list[tuple[int, int]]) -> int:
    return sum(1 for a, b in itertools.pairwise(ids) if a == b)


# ---- REST and the wire --------------------------------------------------------------------------------------
def test_ccxt_reads_kucoin_markets_books_candles_tickers_and_trades_over_rest():
    async def run(handle: ServerHandle) -> None:
        ex = ccxt_client(handle)
        try:
            markets = await ex.load_markets()
            btc = markets["BTC/USDT"]
            assert (btc["id"], btc["spot"], btc["active"], btc["type"]) == ("BTC-USDT", True, True, "spot")
            assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 1e-05)
            assert (btc["limits"]["amount"]["min"], btc["limits"]["cost"]["min"]) == (1e-05, 5.0)
            assert (btc["taker"], btc["maker"]) == (0.001, 0.001)
            assert set(ex.currencies) == {"BTC", "ETH", "SOL", "USDT"}
            await trades_published(handle, {"SOL/USDT": 10})  # the 10 trades read below
            handle.freeze()
            last_id, bids, asks = handle.book("BTC/USDT", 100)
            for limit in (20, 100):
                ob = await ex.fetch_order_book("BTC/USDT", limit)
                assert ob["nonce"] == last_id and ob["bids"] == bids[:limit] and ob["asks"] == asks[:limit]
            async with aiohttp.ClientSession() as session:  # the full book needs a key on KuCoin
                full_url = f"{handle.url}/api/v3/market/orderbook/level2?symbol=BTC-USDT"
                async with session.get(full_url) as resp:
                    assert resp.status == 401 and (await resp.json())["code"] == "400001"
                async with session.get(full_url, headers={"KC-API-KEY": "any"}) as resp:
                    full = (await resp.json())["data"]
            deep = handle.book("BTC/USDT", 10_000)
            assert int(full["sequence"]) == last_id and len(full["bids"]) == len(deep[1]) > 100
            candles = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=250)
            assert len(candles) == 250
            assert all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
            assert candles[-1][0] == handle.server.now_ms() // 60_000 * 60_000  # the open candle is now's
            assert all(c[3] <= min(c[1], c[4]) <= max(c[1], c[4]) <= c[2] for c in candles)  # KuCoin's order
            five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=candles[0][0], limit=30)
            assert len(five) == 30 and all(c[0] % 300_000 == 0 for c in five) and five[0][0] >= candles[0][0]
            tickers = await ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
            assert tickers["BTC/USDT"]["bid"] == bids[0][0] and tickers["BTC/USDT"]["ask"] == asks[0][0]
            ticker = await ex.fetch_ticker("SOL/USDT")
            assert ticker["last"] > 0 and ticker["baseVolume"] > 0 and ticker["bid"] < ticker["ask"]
            trades = await ex.fetch_trades("SOL/USDT")  # /market/histories: KuCoin gives no trade id there
            sent = handle.trade_ids("SOL/USDT")
            assert [int(t["info"]["sequence"]) for t in trades] == sent[-len(trades):] and len(trades) >= 10
            assert all(t["id"] is None and t["side"] in ("buy", "sell") for t in trades)
            assert await ex.fetch_time() == handle.server.now_ms()  # frozen: the server's clock stands still
            with pytest.raises(ccxt.BadRequest):
                await ex.publicGetMarketOrderbookLevel2100({"symbol": "NOPE-USDT"})
        finally:
            await ex.close()

    with synthetic_server(PAIRS, venue=VENUE) as handle:
        asyncio.run(run(handle))


def test_websocket_welcomes_acks_pongs_and_sends_contiguous_kucoin_sequences():
    async def run(url: str) -> dict[str, Any]:
        got: dict[str, Any] = {"frames": {}, "replies": []}
        async with aiohttp.ClientSession() as session:
            b = await bullet(session, url)
            got["bullet"] = b
            endpoint = b["instanceServers"][0]["endpoint"]
            async with session.ws_connect(f"{endpoint}?token=nosuchtoken&connectId=x") as bad:
                got["bad_token"] = json.loads((await bad.receive(timeout=2)).data)
            async with session.ws_connect(f"{endpoint}?token={b['token']}&connectId=abc123") as ws:
                got["welcome"] = json.loads((await ws.receive(timeout=2)).data)
                for rid, topic in [("1", "/market/level2:BTC-USDT,ETH-USDT"), ("2", "/market/match:BTC-USDT"),
                                   ("3", "/spotMarket/level1:BTC-USDT"), ("4", "/market/ticker:BTC-USDT"),
                                   ("5", "/market/candles:BTC-USDT_1min"), ("6", "/market/level2:NOPE-USDT"),
                                   ("7", "/spotMarket/level2Depth5:ETH-USDT")]:
                    await ws.send_str(json.dumps({"id": rid, "type": "subscribe", "topic": topic,
                                                  "privateChannel": False, "response": True}))
                await ws.send_str(json.dumps({"id": "8", "type": "ping"}))
                frames, replies = got["frames"], got["replies"]

                def take(text: str) -> None:
                    d = json.loads(text)
                    (frames.setdefault(d["topic"], []) if d.get("type") == "message" else replies).append(d)

                def done() -> bool:  # every reply, and enough of every topic for the checks below
                    n = {t: len(f) for t, f in frames.items()}
                    return (len(replies) >= 8 and all(n.get(f"/market/level2:{s}", 0) >= 20
                                                      for s in ("BTC-USDT", "ETH-USDT"))
                            and n.get("/market/match:BTC-USDT", 0) >= 5
                            and all(n.get(t) for t in ("/spotMarket/level1:BTC-USDT", "/market/ticker:BTC-USDT",
                                                       "/market/candles:BTC-USDT_1min",
                                                       "/spotMarket/level2Depth5:ETH-USDT")))

                await read_ws_until(ws, take, done, 60, "eight replies, 20 level2 messages a pair, 5 trades and "
                                                        "every other topic")
        return got

    with synthetic_server(PAIRS, venue=VENUE) as handle:
        got = asyncio.run(run(handle.url))
        with urllib.request.urlopen(f"{handle.url}/helios/state?symbol=BTC/USDT&limit=5") as resp:
            state = json.load(resp)
        with urllib.request.urlopen(f"{handle.url}/api/v1/market/orderbook/level2_20?symbol=BTC-USDT") as resp:
            snap = json.load(resp)["data"]
    server = got["bullet"]["instanceServers"][0]
    assert server["endpoint"] == handle.url.replace("http://", "ws://") + "/endpoint"
    assert (server["protocol"], server["encrypt"], server["pingInterval"]) == ("websocket", False, 18_000)
    assert got["bad_token"]["type"] == "error" and got["bad_token"]["data"] == "token is expired"
    assert got["welcome"] == {"id": "abc123", "type": "welcome"}
    replies = got["replies"]
    assert [r for r in replies if r["type"] == "ack"] == [{"id": i, "type": "ack"} for i in "123457"]
    assert any(r["type"] == "error" and r["id"] == "6" and r["code"] == 404 for r in replies)
    assert any(r["type"] == "pong" and r["id"] == "8" for r in replies)
    for sym in ("BTC-USDT", "ETH-USDT"):
        msgs = got["frames"][f"/market/level2:{sym}"]
        assert len(msgs) >= 20 and all(m["subject"] == "trade.l2update" for m in msgs)
        ids = [(m["data"]["sequenceStart"], m["data"]["sequenceEnd"]) for m in msgs]
        assert breaks(ids) == 0 and all(s <= e for s, e in ids)
        for m in msgs:  # every sequence of the message once, in order per side
            d = m["data"]
            seqs = sorted(int(c[2]) for side in ("asks", "bids") for c in d["changes"][side])
            assert seqs == list(range(d["sequenceStart"], d["sequenceEnd"] + 1))
    trades = got["frames"]["/market/match:BTC-USDT"]
    tids = [int(t["data"]["tradeId"]) for t in trades]
    assert tids == list(range(tids[0], tids[0] + len(tids))) and len(tids) >= 5
    t = trades[0]["data"]
    assert t["sequence"] == t["tradeId"] and t["side"] in ("buy", "sell") and len(t["time"]) == 19
    assert set(got["frames"]["/spotMarket/level1:BTC-USDT"][0]["data"]) == {"asks", "bids", "timestamp"}
    assert got["frames"]["/market/ticker:BTC-USDT"][0]["subject"] == "trade.ticker"
    assert got["frames"]["/market/candles:BTC-USDT_1min"][-1]["subject"] == "trade.candles.update"
    assert len(got["frames"]["/spotMarket/level2Depth5:ETH-USDT"][-1]["data"]["bids"]) == 5
    assert state["venue"] == VENUE and state["lastUpdateId"] >= int(snap["sequence"]) > 0


# ---- ccxt follows books and trades --------------------------------------------------------------------------
@pytest.mark.slow
def test_ccxt_follows_three_pairs_for_a_minute_with_every_trade_once():
    async def run(handle: ServerHandle) -> tuple[dict[str, Follow], dict[str, bool], dict, dict]:
        ex = ccxt_client(handle)
        ranges = track_snapshots(ex)

        async def books() -> tuple[dict[str, Follow], dict[str, bool]]:
            stats = await follow_books(ex, handle, PAIRS, FOLLOW_S - 0.5, ranges)
            return stats, await converge(ex, handle, PAIRS, ranges)  # leaves the market frozen

        try:
            await ex.load_markets()
            (stats, converged), got, sent = await with_every_trade(handle, [(ex, PAIRS)], books)
        finally:
            await ex.close()
        return stats, converged, got, sent

    with synthetic_server(PAIRS, seed=9, venue=VENUE) as handle:
        t0 = time.monotonic()
        stats, converged, got, sent = asyncio.run(run(handle))
        snapshots = handle.log.rest_by_path.get("/api/v1/market/orderbook/level2_100", 0)
    for sym in PAIRS:
        s = stats[sym]
        assert s.mismatches == 0, (sym, s.first_mismatch)
        assert s.checks >= MIN_CHECKS, (sym, s.checks)
        assert not s.errors, (sym, s.errors)
        assert s.covered_levels / s.checks >= 40, (sym, s.covered_levels / s.checks)  # a deep comparison
    assert_every_trade_once(got, sent, 100)
    assert converged == dict.fromkeys(PAIRS, True)
    assert snapshots == len(PAIRS)  # one snapshot per pair: nothing broke the sequence
    print(f"kucoin ccxt follow: {time.monotonic() - t0:.0f} s; " + "; ".join(
        f"{s}: checks {stats[s].checks}, mismatches {stats[s].mismatches}, full top-100 matches "
        f"{stats[s].full_matches}, levels compared per side {stats[s].covered_levels / stats[s].checks:.0f}, "
        f"trades {len(got[s])}" for s in PAIRS))


# ---- faults -------------------------------------------------------------------------------------------------
SYMS = ["BTC/USDT", "ETH/USDT"]


@dataclass
class FaultRun:
    stats: dict[str, Follow]
    raw: list[dict[str, Any] | str]
    converged: dict[str, bool]
    counts: dict[str, int]
    snapshots: int
    rest_errors: list[str] = field(default_factory=list)
    plain: dict[str, Follow] = field(default_factory=dict)


def run_fault(spec: str, seconds: float = 6.0, ping_interval_s: float = 20.0, rest_calls: int = 0,
              plain: bool = False) -> FaultRun:
    """``spec`` from the second second on: a raw client and ccxt with the frame guard and the proposed chain check
    follow both pairs (and, with ``plain``, ccxt as it comes, no check); then the checked client must converge."""
    async def run(handle: ServerHandle) -> FaultRun:
        ex = checked_client(handle)
        ranges = track_snapshots(ex)
        bare = ccxt_client(handle) if plain else None
        bare_ranges = track_snapshots(bare) if bare is not None else {}
        rest = ccxt_client(handle)
        try:
            await ex.load_markets()
            if bare is not None:
                await bare.load_markets()
            followers = [follow_books(ex, handle, SYMS, seconds, ranges)]
            if bare is not None:
                followers.append(follow_books(bare, handle, SYMS, seconds, bare_ranges))
            results, raw = await beside(asyncio.gather(*followers), lambda stop: raw_level2(handle.url, stop))
            rest_errors = await rest_book_results(rest, "BTC/USDT", 100, rest_calls)
            converged = await converge(ex, handle, SYMS, ranges)
        finally:
            for client in (ex, bare, rest):
                if client is not None:
                    await client.close()
        return FaultRun(results[0], raw, converged, handle.fault_counts(),
                        handle.log.rest_by_path.get("/api/v1/market/orderbook/level2_100", 0), rest_errors,
                        results[1] if bare is not None else {})

    with synthetic_server(SYMS, seed=3, faults=f"{spec},after=1", venue=VENUE, ping_interval_s=ping_interval_s) as h:
        return asyncio.run(run(h))


def assert_consistent_and_converged(run: FaultRun) -> None:
    assert_exact_and_converged(run.stats, run.converged, SYMS)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "loses"), [("drop=1/15,reorder=1/20", True), ("gap=1/15", False)])
def test_broken_chains_pass_ccxt_unchecked_and_the_proposed_check_resyncs(spec: str, loses: bool):
    run = run_fault(spec, plain=True)
    ids = chain(run.raw)
    assert breaks(ids) >= 1  # a raw client sees sequenceStart jump past the last sequenceEnd + 1
    # ccxt as it comes raises nothing; a lost message leaves its book wrong (a gap loses no level)
    assert errors_of(run.plain) == {}
    wrong = sum(s.mismatches for s in run.plain.values())
    assert (wrong > 0) if loses else (wrong == 0), run.plain
    # with the check: each break fails the connection (ChecksumError), ccxt re-snapshots, and stays exact
    assert errors_of(run.stats).get("ChecksumError", 0) >= 2, errors_of(run.stats)
    assert run.snapshots >= 2 * len(SYMS) + 2
    assert_consistent_and_converged(run)


@pytest.mark.slow
def test_a_repeated_message_is_discarded_by_ccxt_and_by_kucoins_rule():
    run = run_fault("dup=1/10")
    assert run.counts["dup"] >= 4
    assert repeats(chain(run.raw)) >= 1 and breaks(chain(run.raw)) == 0
    assert errors_of(run.stats) == {}  # sequenceEnd <= nonce: discarded, no resync needed
    assert run.snapshots == len(SYMS)
    assert_consistent_and_converged(run)


@pytest.mark.slow
def test_stale_snapshots_make_ccxt_fetch_again_and_fail_the_sync_then_recover():
    run = run_fault("stale=0.5,drop=1/20", seconds=10.0)
    assert run.counts["stale"] >= 2
    errors = errors_of(run.stats)
    # a stale snapshot is older than the cached messages: ccxt fetches again (up to 3 times), and fails the
    # sync with "nonce is behind the cache" when all 3 were stale
    assert run.snapshots >= len(SYMS) + errors.get("ChecksumError", 0) + run.counts["stale"] - 2
    assert_consistent_and_converged(run)


@pytest.mark.slow
def test_crossed_book_and_malformed_frames_reach_ccxt_and_it_recovers():
    run = run_fault("crossed=1/40,malformed=1/30", seconds=10.0)
    assert run.counts["crossed"] >= 2 and run.counts["malformed"] >= 2
    bad = [f for f in run.raw if isinstance(f, str)]
    assert bad and bad[0].startswith('{"topic":"/market/level2:BTC-USDT","type":"message","subject":"trade.l2update"')
    assert sum(s.crossed_seen for s in run.stats.values()) >= 1
    # the frame guard turns ccxt's failure on a truncated frame into a NetworkError on the connection
    assert errors_of(run.stats).get("NetworkError", 0) >= 1, errors_of(run.stats)
    assert_consistent_and_converged(run)


@pytest.mark.slow
def test_server_disconnects_make_ccxt_raise_and_reconnect():
    run = run_fault("disconnect=2", seconds=7.0)
    assert run.counts["disconnect"] >= 2
    assert errors_of(run.stats).get("NetworkError", 0) >= 2, errors_of(run.stats)
    assert run.snapshots >= 3 * len(SYMS)
    assert_consistent_and_converged(run)


@pytest.mark.slow
def test_unanswered_pings_time_the_ccxt_connection_out_at_kucoins_ping_interval():
    # ccxt pings at the bullet's pingInterval (its keepAlive setting is overridden): a 1 s server interval
    run = run_fault("noping=1.5", seconds=7.0, ping_interval_s=1.0)
    assert errors_of(run.stats).get("RequestTimeout", 0) >= 1, errors_of(run.stats)
    assert_consistent_and_converged(run)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "error"), [("rest429=1/2", "RateLimitExceeded"),
                                               ("rest5xx=1/2", "ExchangeNotAvailable")])
def test_rest_errors_reach_ccxt_as_kucoins_and_books_still_converge(spec: str, error: str):
    run = run_fault(f"{spec},drop=1/30", rest_calls=4)
    assert run.rest_errors.count(error) == 2, run.rest_errors  # every 2nd of 4 requests to level2_100
    assert_consistent_and_converged(run)


# ---- the live feed ------------------------------------------------------------------------------------------
def feed_settings(**feed: Any) -> HeliosSettings:
    return HeliosSettings.from_dict({"feed": {"book_depth": FEED_DEPTH, **feed}})


@pytest.mark.slow
def test_the_feed_follows_three_kucoin_pairs_and_its_recording_rebuilds_the_servers_books(tmp_path: Path):
    """Healthy over 200 book updates a pair (~20 s); every recorded book state equals the server's at its sequence over
    the top 20 (the feed asks ccxt for 100 levels, all KuCoin's public snapshot has: deeper, see the module doc);
    KuCoin's trade ids in order, once (tests/exchange_fixtures.py says what else is held)."""
    run = feed_rebuilds_the_servers_books(VENUE, PAIRS, tmp_path, feed_settings(), exact_depth=20)
    print(f"kucoin feed: healthy after {run.healthy_after_s:.1f} s; book states compared {run.compared}, whole "
          f"top 100 equal {run.whole_depth_equal}; trades {run.trades}")


@pytest.mark.slow
def test_the_feed_declares_a_kucoin_chain_break_as_a_gap(tmp_path: Path):
    feed_declares_gaps(VENUE, SYMS, tmp_path, feed_settings())


@pytest.mark.slow
def test_helios_exchange_serves_kucoin_synthetic_and_replayed_and_reports_kucoins_sequence(tmp_path: Path):
    rec = synthetic_recording(tmp_path / "rec", "ETH/USDT", int(time.time()) * 1_000_000, 60_000_000)
    for args, symbol in ((["--synthetic", "--symbols", "BTC/USDT", "SOL/USDT"], "SOL/USDT"),
                         (["--replay", str(rec)], "ETH/USDT")):
        with exchange_process(VENUE, args, tmp_path / f"exchange-{args[0].strip('-')}.log", symbol) as proc:
            with urllib.request.urlopen(f"{proc.url}/api/v1/market/orderbook/level2_20?symbol={wire(symbol)}") as r:
                snapshot = json.load(r)["data"]
            assert_serves(proc, VENUE, symbol, int(snapshot["sequence"]))


# ---- Freqtrade ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_freqtrade_dry_run_with_helios_strategy_opens_a_trade_on_kucoin(tmp_path: Path):
    # ccxt's kucoin refuses a book limit above 100 (the feed's default is 1000)
    got = freqtrade_dry_run_opens_a_trade(VENUE, tmp_path, helios_feed={"book_depth": FEED_DEPTH})
    rest, subs = got["rest"], got["subscriptions"]
    assert rest["/api/v2/symbols"] >= 1 and rest["/api/v1/market/candles"] >= 2 and rest["/api/v3/currencies"] >= 1
    assert {"/market/level2:BTC-USDT", "/market/match:BTC-USDT"} <= set(subs), subs
    print(f"\nkucoin freqtrade: {got['trade']} after {got['seconds']:.0f} s; REST {rest}")
