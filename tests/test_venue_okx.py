"""The local exchange speaks OKX v5 (spot and USDT-margined swaps) as ccxt 4.5.90's ``okx`` client, the live feed
and Freqtrade read it.

How ccxt follows an OKX book: ``watch_order_book`` subscribes the ``books`` channel; the first message is a
400-level ``snapshot``, every later ``update`` must have ``prevSeqId`` equal to the ``seqId`` ccxt holds, else
ccxt raises ``InvalidNonce``, drops the book and unsubscribes and subscribes again on the next call (a new
snapshot). Its book carries OKX's ``seqId`` as ``nonce`` (the market's update id here), so every observed book
is compared with the server's book at that id (``book_at``), not by freezing. ccxt does not verify OKX's
CRC32 ``checksum``; ``helios_orderflow/live/okx_book_check.py`` does, and the tests below run it over every
book frame ccxt handles.

Swap books and trades are in contracts (``ctVal`` = the instrument's lot step): the server's books are compared
through ``ContractView``, which states the server's base quantities in contracts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import pytest
from feed_fault_harness import check_fault, run_fault

from helios_orderflow.emulator import SyntheticSource
from helios_orderflow.emulator.app import STALE_AGE_US
from helios_orderflow.emulator.dialects import dialect_class
from helios_orderflow.emulator.instruments import Instrument, instrument
from helios_orderflow.live.okx_book_check import check, okx_checksum
from tests.exchange_fixtures import (
    FOLLOW_S,
    MIN_CHECKS,
    assert_every_trade_once,
    assert_exact_and_converged,
    assert_serves,
    ccxt_client,
    converge,
    errors_of,
    exchange_process,
    feed_rebuilds_the_servers_books,
    follow_books,
    synthetic_recording,
    synthetic_server,
    trades_published,
    with_every_trade,
)
from tests.venue_dry_run import freqtrade_dry_run_opens_a_trade
from tests.waits import HANG_S, beside, read_ws_until, wait_for

pytestmark = pytest.mark.integration

VENUE = "okx"
SPOT = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
SWAPS = [f"{s}:USDT" for s in SPOT]


class ContractView:
    """The server's books (``ServerHandle.book``/``book_at``) with sizes in contracts, as ccxt keeps OKX swap
    books: contracts = qty_units / step_units (``ctVal`` is one lot step). Spot books pass unchanged."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.insts: dict[str, Instrument] = {s.inst.symbol: s.inst for s in handle.server.source.states}

    def _levels(self, symbol: str, levels: list[list[float]]) -> list[list[float]]:
        inst = self.insts[symbol]
        if inst.market == "spot":
            return levels
        return [[p, float(inst.qty_to_units(a) // inst.step_units)] for p, a in levels]

    def book_at(self, symbol: str, update_id: int) -> tuple[list[list[float]], list[list[float]]] | None:
        got = self.handle.book_at(symbol, update_id)
        return None if got is None else (self._levels(symbol, got[0]), self._levels(symbol, got[1]))

    def book(self, symbol: str, limit: int = 100) -> tuple[int, list[list[float]], list[list[float]]]:
        uid, bids, asks = self.handle.book(symbol, limit)
        return uid, self._levels(symbol, bids), self._levels(symbol, asks)

    def freeze(self) -> None:
        self.handle.freeze()

    def resume(self) -> None:
        self.handle.resume()


def checked(ex: Any, problems: list[str]) -> Any:
    """``ex`` with Helios's OKX checksum check run after ccxt handled each frame (as the feed's frame guard
    does), its findings collected in ``problems`` instead of failing the connection."""
    make = ex.client

    def client(url: str) -> Any:
        c = make(url)
        if not getattr(c, "_okx_checked", False):
            handle = c.handle_text_or_binary_message

            def handled(data: Any, _handle: Any = handle) -> None:
                _handle(data)
                problem = check(ex, data)
                if problem is not None:
                    problems.append(problem)

            c.handle_text_or_binary_message = handled
            c._okx_checked = True
        return c

    ex.client = client
    return ex


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


# ---- REST ------------------------------------------------------------------------------------------------------
def test_ccxt_reads_okx_spot_and_swap_markets_books_candles_tickers_trades_and_funding_over_rest():
    async def run(handle: Any) -> None:
        spot, swap = ccxt_client(handle, "spot"), ccxt_client(handle, "linear")
        try:
            await spot.load_markets()
            await swap.load_markets()
            assert sorted(spot.markets) == ["BTC/USDT", "ETH/USDT"] and sorted(swap.markets) == ["BTC/USDT:USDT"]
            m = spot.markets["BTC/USDT"]
            assert (m["id"], m["spot"], m["precision"], m["limits"]["amount"]["min"]) == (
                "BTC-USDT", True, {"amount": 1e-05, "price": 0.01}, 1e-05)
            s = swap.markets["BTC/USDT:USDT"]
            assert (s["id"], s["swap"], s["linear"], s["contractSize"], s["precision"]) == (
                "BTC-USDT-SWAP", True, True, 0.001, {"amount": 1.0, "price": 0.1})
            assert abs(await spot.fetch_time() - time.time() * 1000) < 5_000
            await trades_published(handle, {"BTC/USDT": 20})  # some trades: the 20 read below
            # then the market stands still, so that the book, ticker and trades read over several requests are
            # of one state (on a loaded machine a step fell between two requests)
            handle.freeze()
            ob = await spot.fetch_order_book("BTC/USDT", 10)
            _, bids, asks = handle.book("BTC/USDT", 10)
            assert [b[:2] for b in ob["bids"]] == bids and [a[:2] for a in ob["asks"]] == asks
            swap_ob = await swap.fetch_order_book("BTC/USDT:USDT", 5)
            assert all(a[1] == int(a[1]) >= 1 for a in swap_ob["bids"] + swap_ob["asks"])  # whole contracts
            candles = await spot.fetch_ohlcv("BTC/USDT", "1m", limit=50)
            assert len(candles) == 50 and all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
            since = candles[0][0] - 100 * 60_000
            older = await spot.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=80, params={"type": "HistoryCandles"})
            assert [c[0] for c in older] == [since + k * 60_000 for k in range(80)]  # from ``since``, oldest first
            until = await spot.fetch_ohlcv("BTC/USDT", "5m", limit=10, params={"until": since})
            assert len(until) == 10 and until[-1][0] < since
            hourly = await swap.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=3)
            assert len(hourly) == 3 and hourly[-1][0] % 3_600_000 == 0
            ticker = await spot.fetch_ticker("BTC/USDT")
            assert (ticker["bid"], ticker["ask"]) == (bids[0][0], asks[0][0]) and ticker["quoteVolume"] > 0
            tickers = await swap.fetch_tickers()
            assert list(tickers) == ["BTC/USDT:USDT"]
            trades = await spot.fetch_trades("BTC/USDT", limit=20)
            ids = [int(t["id"]) for t in trades]
            assert ids == sorted(ids) and ids[-1] == handle.trade_ids("BTC/USDT")[-1] and trades[0]["side"]
            rate = await swap.fetch_funding_rate("BTC/USDT:USDT")
            assert rate["fundingRate"] == 0.0001 and rate["interval"] == "8h"
            history = await swap.fetch_funding_rate_history("BTC/USDT:USDT", limit=5)
            assert len(history) == 5 and history[-1]["timestamp"] % 28_800_000 == 0
            tiers = await swap.fetch_market_leverage_tiers("BTC/USDT:USDT")
            assert tiers[0]["maxLeverage"] == 100
            oi = await swap.fetch_open_interest("BTC/USDT:USDT")
            assert oi["openInterestAmount"] == 1_000_000
            with pytest.raises(ccxt.BadSymbol):
                await spot.public_get_market_ticker({"instId": "NOPE-USDT"})
            with pytest.raises(ccxt.BadRequest):
                await spot.public_get_market_candles({"instId": "BTC-USDT", "bar": "7m"})
        finally:
            await spot.close()
            await swap.close()

    with synthetic_server(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"], venue=VENUE) as handle:
        asyncio.run(run(handle))


# ---- websocket protocol --------------------------------------------------------------------------------------------
async def raw_books(handle: Any, enough: Callable[[list[Any]], Any], inst_id: str = "BTC-USDT",
                    closed_ok: bool = False) -> tuple[list[Any], list[str]]:
    """Subscribe ``books`` on a raw socket and read until ``enough(books so far)``: (parsed book messages, other
    text frames). ``closed_ok``: a reader beside a fault, which a server close ends and which lasts as long as
    what it reads beside (bounded by ``HANG_S`` only)."""
    url = handle.url.replace("http://", "ws://") + "/ws/v5/public"
    books: list[Any] = []
    other: list[str] = []

    def take(text: str) -> None:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None  # a truncated frame (the malformed fault)
        if isinstance(parsed, dict) and "action" in parsed:
            books.append(parsed)
        else:
            other.append(text)

    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": inst_id}]}))
        await read_ws_until(ws, take, lambda: enough(books), HANG_S if closed_ok else 60,
                            f"{inst_id} books messages", closed_ok=closed_ok)
    return books, other


def rebuild_checks(messages: list[Any]) -> tuple[int, int, int]:
    """Rebuild a string book from raw ``books`` messages: (messages whose checksum matched, mismatched,
    ``prevSeqId`` breaks)."""
    bids: dict[float, tuple[str, str]] = {}
    asks: dict[float, tuple[str, str]] = {}
    ok = bad = breaks = 0
    last = None
    for m in messages:
        d = m["data"][0]
        if m["action"] == "snapshot":
            bids.clear()
            asks.clear()
            assert d["prevSeqId"] == -1
        elif d["prevSeqId"] != last:
            breaks += 1
        last = d["seqId"]
        for side, levels in ((bids, d["bids"]), (asks, d["asks"])):
            for px, sz, _, _ in levels:
                if float(sz):
                    side[float(px)] = (px, sz)
                else:
                    side.pop(float(px), None)
        top_b = [bids[p] for p in sorted(bids, reverse=True)[:25]]
        top_a = [asks[p] for p in sorted(asks)[:25]]
        if okx_checksum(top_b, top_a) == d["checksum"]:
            ok += 1
        else:
            bad += 1
    return ok, bad, breaks


def test_websocket_acks_refuses_pongs_and_chains_seqids_with_okx_checksums():
    async def run(handle: Any) -> None:
        url = handle.url.replace("http://", "ws://") + "/ws/v5/public"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": [
                {"channel": "books", "instId": "NOPE-USDT"}, {"channel": "candle1m", "instId": "ETH-USDT"}]}))
            for _ in range(2):  # an unknown instrument, and candles on the public URL, are OKX's 60018
                err = json.loads(await ws.receive_str(timeout=5))
                assert err["event"] == "error" and err["code"] == "60018"
            await ws.send_str("not json")
            assert json.loads(await ws.receive_str(timeout=5))["code"] == "60012"
            await ws.send_str("ping")
            assert await ws.receive_str(timeout=5) == "pong"
            await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "trades", "instId": "ETH-USDT"}]}))
            ack = json.loads(await ws.receive_str(timeout=5))
            assert ack["event"] == "subscribe" and ack["arg"] == {"channel": "trades", "instId": "ETH-USDT"}
            assert len(ack["connId"]) == 8
            trade = json.loads(await ws.receive_str(timeout=5))["data"][0]
            assert set(trade) >= {"instId", "tradeId", "px", "sz", "side", "ts"} and trade["side"] in ("buy", "sell")
            await ws.send_str(json.dumps({"op": "unsubscribe", "args": [{"channel": "trades", "instId": "ETH-USDT"}]}))
            while (text := await ws.receive_str(timeout=5)).startswith('{"arg"'):
                pass  # trades sent before the request was read
            assert json.loads(text)["event"] == "unsubscribe"
        books, _ = await raw_books(handle, lambda got: len(got) >= 20)
        assert books[0]["action"] == "snapshot" and len(books) >= 20
        snap = books[0]["data"][0]
        assert len(snap["bids"]) > 50 and snap["bids"][0][2:] == ["0", "1"]
        assert all(not px.endswith("0") and not sz.endswith(".") for px, sz, _, _ in snap["bids"] if "." in px)
        ok, bad, breaks = rebuild_checks(books)
        assert (ok, bad, breaks) == (len(books), 0, 0)
        # the swap: sizes are whole contracts
        swap_books, _ = await raw_books(handle, lambda got: len(got) >= 10, "BTC-USDT-SWAP")
        assert all(sz.isdigit() for px, sz, _, _ in swap_books[0]["data"][0]["asks"])
        assert rebuild_checks(swap_books)[1:] == (0, 0)
        # candles on the business URL
        business = handle.url.replace("http://", "ws://") + "/ws/v5/business"
        async with aiohttp.ClientSession() as session, session.ws_connect(business) as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT"}]}))
            assert json.loads(await ws.receive_str(timeout=5))["event"] == "subscribe"
            candle = json.loads(await ws.receive_str(timeout=5))
            assert candle["arg"]["channel"] == "candle1m" and len(candle["data"][0]) == 9

    with synthetic_server(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"], venue=VENUE) as handle:
        asyncio.run(run(handle))


def test_books_updates_of_a_side_deeper_than_400_levels_keep_okxs_400_level_view():
    """Beyond 400 levels a side the ``books`` updates keep a 400-level view, as OKX's do: levels entering it as
    the book moves are sent, levels leaving it are sent removed, changes outside it are not sent (so ccxt's
    book, which ccxt limits to 400 levels, has no holes)."""
    from helios_orderflow.emulator.dialects.okx import view_changes

    book = {p: 1 for p in range(1000, 1500)}  # 500 bids, view edge 1100
    del book[1499], book[1498]  # the two best go ...
    book[1050] = 7  # ... and a level outside the view changes
    out, edge = view_changes(book, [(1499, 0), (1498, 0), (1050, 7)], 1100, True)
    assert edge == 1098 and out == [(1499, 0), (1498, 0), (1099, 1), (1098, 1)]
    asks = {p: 1 for p in range(2000, 2500)}
    asks[1999] = 3  # a new best ask pushes the view's worst out
    out, edge = view_changes(asks, [(1999, 3)], 2399, False)
    assert edge == 2398 and out == [(1999, 3), (2399, 0)]


def test_a_books_subscription_before_the_first_step_gets_its_snapshot_with_the_seqid_of_its_book():
    """A source's first book is written before the server's first step numbers it: a snapshot then would carry
    the old seqId with the new book. It waits for that step instead (a feed that connected in that window once
    saw seqId 1000000, a book the server never recorded at that id)."""
    from helios_orderflow.emulator.hub import Connection
    from helios_orderflow.emulator.server import ExchangeServer

    server = ExchangeServer(SyntheticSource(["BTC/USDT"], seed=1), venue=VENUE, record=True)
    st = server.state("BTC/USDT")
    conn = Connection(None, "public")  # type: ignore[arg-type]  # no socket: frames stay in conn.out
    conn.data.update(connId="0000beef", keys=set())
    server.dialect.on_text(server.hub, conn, "public", json.dumps(  # type: ignore[attr-defined]
        {"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}))
    assert [json.loads(f)["event"] for f in conn.out] == ["subscribe"] and st.last_update_id == 1_000_000
    server.step(server.next_step_us)
    snapshot = json.loads(conn.out[-1])
    assert len(conn.out) == 2 and snapshot["action"] == "snapshot"  # and not the step's update before it
    seq_id = snapshot["data"][0]["seqId"]
    assert seq_id == st.last_update_id > 1_000_000
    bids, _ = server.log.books["BTC/USDT"][seq_id]
    assert [[float(px), float(sz)] for px, sz, _, _ in snapshot["data"][0]["bids"][:100]] == bids


# ---- ccxt follows books and trades ---------------------------------------------------------------------------------
async def follow_all(handle: Any, market: str, symbols: list[str], seconds: float) -> tuple[Any, ...]:
    view = ContractView(handle)
    problems: list[str] = []
    ex = checked(ccxt_client(handle, market), problems)

    async def books() -> tuple[Any, Any]:
        stats = await follow_books(ex, view, symbols, seconds - 0.5)
        return stats, await converge(ex, view, symbols)  # freezes the market

    try:
        await ex.load_markets()
        (stats, converged), got, sent = await with_every_trade(handle, [(ex, symbols)], books)
    finally:
        await ex.close()
    return stats, converged, got, sent, problems


@pytest.mark.slow
@pytest.mark.parametrize("market", ["spot", "linear"])
def test_ccxt_follows_three_okx_books_exactly_for_a_minute_with_every_trade_once(market: str):
    symbols = SPOT if market == "spot" else SWAPS
    t0 = time.monotonic()
    with synthetic_server(symbols, venue=VENUE) as handle:
        stats, converged, got, sent, problems = asyncio.run(follow_all(handle, market, symbols, FOLLOW_S))
    for sym in symbols:
        s = stats[sym]
        assert s.mismatches == 0, (sym, s.first_mismatch)
        assert s.checks >= MIN_CHECKS, (sym, s.checks)
        assert not s.errors, (sym, s.errors)
    assert_every_trade_once(got, sent, 300)
    assert converged == {s: True for s in symbols}
    assert problems == []  # every books frame's CRC32 matched ccxt's book, rebuilt from OKX's strings
    print(f"okx {market}: checks {[stats[s].checks for s in symbols]}, mismatches 0, trades "
          f"{[len(got[s]) for s in symbols]}, {time.monotonic() - t0:.0f} s")


# ---- faults ----------------------------------------------------------------------------------------------------
PAIR = ["BTC/USDT", "ETH/USDT"]


async def run_client_fault(spec: str, seconds: float = 6.0, keep_alive_ms: int | None = None) -> tuple[Any, ...]:
    with synthetic_server(PAIR, seed=3, faults=f"{spec},after=1", venue=VENUE) as handle:
        problems: list[str] = []
        ex = checked(ccxt_client(handle, keep_alive_ms=keep_alive_ms), problems)
        try:
            await ex.load_markets()
            stats, (books, other) = await beside(
                follow_books(ex, handle, PAIR, seconds),
                lambda stop: raw_books(handle, lambda _: stop.is_set(), closed_ok=True))
            handle.call(lambda: setattr(handle.server.faults, "after_s", 1e12))  # the fault clears
            converged = await converge(ex, handle, PAIR)
            counts = handle.fault_counts()
            subscriptions = dict(handle.log.subscriptions)
        finally:
            await ex.close()
    return stats, converged, counts, books, other, problems, subscriptions


def assert_consistent_and_converged(stats: dict[str, Any], converged: dict[str, bool]) -> None:
    assert_exact_and_converged(stats, converged, PAIR)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["drop", "reorder", "dup", "gap"])
def test_a_broken_seqid_chain_makes_ccxt_raise_invalid_nonce_resubscribe_and_converge(kind: str):
    stats, converged, counts, books, _, problems, subs = asyncio.run(run_client_fault(f"{kind}=1/15"))
    assert counts[kind] >= 4
    assert rebuild_checks(books)[2] >= 1  # a raw client sees prevSeqId not naming the seqId it holds
    errors = errors_of(stats)
    assert errors.get("InvalidNonce", 0) >= 2, errors  # ccxt raised on the break ...
    assert subs["books:BTC-USDT"] >= 3 and subs["books:ETH-USDT"] >= 2  # ... and subscribed again (new snapshot)
    assert problems == []  # no checksum broken by it: ccxt dropped the book before the check saw it
    assert_consistent_and_converged(stats, converged)
    print(f"okx {kind}: fired {counts[kind]}, ccxt errors {errors}, books subscriptions {subs['books:BTC-USDT']}+"
          f"{subs['books:ETH-USDT']}, checks {[s.checks for s in stats.values()]}, mismatches 0")


@pytest.mark.slow
def test_a_wrong_checksum_passes_ccxt_and_is_caught_by_the_helios_check():
    stats, converged, counts, books, _, problems, _ = asyncio.run(run_client_fault("checksum=1/10"))
    assert counts["checksum"] >= 6
    assert errors_of(stats) == {}  # ccxt does not verify the checksum ...
    assert rebuild_checks(books)[1] >= 1 and rebuild_checks(books)[2] == 0  # ... levels and ids are right
    assert len(problems) >= 4 and all(p.startswith("okx checksum mismatch on ") for p in problems), problems
    assert_consistent_and_converged(stats, converged)
    print(f"okx checksum: fired {counts['checksum']}, caught {len(problems)} (e.g. {problems[0]}), ccxt errors 0")


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "error"), [("malformed=1/20", "Stall"), ("disconnect=2", "NetworkError"),
                                               ("noping=1.5", "RequestTimeout"), ("crossed=1/40", None)])
def test_connection_faults_reach_ccxt_as_okx_shows_them_and_its_book_converges(spec: str, error: str | None):
    keep_alive = 500 if spec.startswith("noping") else None
    stats, converged, counts, _, other, problems, _ = asyncio.run(
        run_client_fault(spec, seconds=8.0, keep_alive_ms=keep_alive))
    errors = errors_of(stats)
    if error is None:  # crossed: an ordinary level change, seen as a crossed book
        assert counts["crossed"] >= 2 and errors == {}
        assert sum(s.crossed_seen for s in stats.values()) >= 1
    else:
        assert errors.get(error, 0) >= 1, errors
    if spec.startswith("malformed"):
        assert any(f.startswith('{"arg":{"channel":"books"') for f in other)  # the truncated frame
    assert problems == []
    assert_consistent_and_converged(stats, converged)
    print(f"okx {spec}: fired {counts}, ccxt errors {errors}, checks {[s.checks for s in stats.values()]}")


@pytest.mark.slow
def test_rest_faults_reach_rest_callers_as_okx_errors_and_the_websocket_book_is_untouched():
    async def run(handle: Any) -> tuple[list[str], Any]:
        ex = ccxt_client(handle)
        errors: list[str] = []
        try:
            await ex.load_markets()
            handle.call(lambda: setattr(handle.server.faults, "after_s", 0))
            for _ in range(4):
                try:
                    await ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
                except ccxt.BaseError as exc:
                    errors.append(type(exc).__name__)
            stats = await follow_books(ex, handle, PAIR, 3.0)
        finally:
            await ex.close()
        return errors, stats

    for spec, error in (("rest429=1/2", "RateLimitExceeded"), ("rest5xx=1/2", "ExchangeNotAvailable")):
        with synthetic_server(PAIR, seed=3, faults=f"{spec},after=1e9", venue=VENUE) as handle:
            errors, stats = asyncio.run(run(handle))
        assert errors == [error, error], errors  # every 2nd of 4 candle requests
        assert errors_of(stats) == {} and all(s.checks > 5 and s.mismatches == 0 for s in stats.values())
    # stale: market/books answers from a snapshot >= 2 s old (the websocket book never comes from REST)
    with synthetic_server(PAIR, seed=3, faults="stale=1/1,after=1", venue=VENUE) as handle:
        server = handle.server

        def stale_one_kept() -> bool:  # the fault is on, and the server holds a BTC/USDT book >= 2 s old
            kept = server._stale.get("BTC/USDT")
            return bool(server.elapsed_s() > server.faults.after_s and kept
                        and server.now_us() - kept[0][0] >= STALE_AGE_US)

        wait_for(lambda: handle.call(stale_one_kept), 60, "a book old enough for the stale fault")
        handle.freeze()
        got = get(f"{handle.url}/api/v5/market/books?instId=BTC-USDT&sz=20")["data"][0]
        _, bids, _ = handle.book("BTC/USDT", 20)
        assert [[float(px), float(sz)] for px, sz, _, _ in got["bids"]] != bids  # the book of >= 2 s ago
        assert handle.fault_counts()["stale"] == 1


# ---- the live feed ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_feed_follows_three_okx_pairs_and_its_recording_rebuilds_the_servers_books(tmp_path: Path):
    """Healthy over 200 book updates a pair (~20 s); every recorded book state equals the server's top 100 at its seqId;
    OKX's trade ids in order, once; no checksum mismatch over the run (tests/exchange_fixtures.py says what is held)."""
    run = feed_rebuilds_the_servers_books(VENUE, SPOT, tmp_path)
    print(f"okx feed: book states compared {run.compared}, trades {run.trades}")


@pytest.mark.slow
def test_the_feed_states_okx_swap_books_and_trades_in_base_units_not_contracts(tmp_path: Path):
    """On OKX swaps ccxt counts sizes in contracts of ``ctVal`` base (0.01 BTC on the real BTC-USDT-SWAP; the lot
    step here); the feed's events carry base units, as on every other venue, so walls, CVD and VWAP volumes mean
    the same on every venue: every recorded book state and trade amount equals the server's base quantities."""
    run = feed_rebuilds_the_servers_books(VENUE, SWAPS, tmp_path, updates=100, min_compared=75, market="linear")
    assert all(run.health[s].bbo > 0 for s in SWAPS)
    print(f"okx swap feed: book states compared {run.compared}, trades {run.trades}")


@pytest.mark.slow
def test_the_feed_declares_a_wrong_okx_checksum_as_a_gap_resyncs_and_records_exact_books(tmp_path: Path):
    run = run_fault(VENUE, "checksum", tmp_path)
    try:
        check_fault(run)  # resynced within 2 s after it cleared, every recorded book exact, no gap after
        for s, h in run.health.items():
            assert h.gaps >= 1 and h.resyncs >= 1, (s, h)
            assert "okx checksum mismatch on" in (h.last_error or ""), h.last_error
        assert run.plan.counts["checksum"] >= 1
    finally:
        run.exchange.stop()
    print(f"okx feed checksum fault: fired {run.plan.counts['checksum']}, resynced {run.took:.2f} s after it "
          f"cleared, gaps {[h.gaps for h in run.health.values()]}")


# ---- helios exchange --venue okx ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_helios_exchange_serves_okx_synthetic_and_replayed_and_reports_okx_seqids(tmp_path: Path):
    async def first_seq_id(url: str, inst_id: str) -> int:
        async with aiohttp.ClientSession() as session, session.ws_connect(
                url.replace("http://", "ws://") + "/ws/v5/public") as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": inst_id}]}))
            await ws.receive_str(timeout=5)  # the ack
            return int(json.loads(await ws.receive_str(timeout=5))["data"][0]["seqId"])

    rec = synthetic_recording(tmp_path / "rec", "ETH/USDT", int(time.time()) * 1_000_000, 60_000_000)
    for args, symbol, markets in ((["--synthetic", "--symbols", "BTC/USDT", "BTC/USDT:USDT"], "BTC/USDT:USDT",
                                   ("spot", "linear")), (["--replay", str(rec)], "ETH/USDT", ("spot",))):
        with exchange_process(VENUE, args, tmp_path / f"exchange-{args[0].strip('-')}.log", symbol) as proc:
            seq_id = asyncio.run(first_seq_id(proc.url, dialect_class(VENUE).wire(instrument(symbol))))
            assert_serves(proc, VENUE, symbol, seq_id, markets)


# ---- Freqtrade ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_freqtrade_dry_run_with_helios_strategy_opens_a_trade_on_okx(tmp_path: Path):
    got = freqtrade_dry_run_opens_a_trade(VENUE, tmp_path)
    rest, subs = got["rest"], got["subscriptions"]
    assert rest["/api/v5/public/instruments"] >= 1
    assert rest.get("/api/v5/market/candles", 0) + rest.get("/api/v5/market/history-candles", 0) >= 2
    assert {"candle1m:BTC-USDT", "books:BTC-USDT", "trades:BTC-USDT"} <= set(subs), subs
    print(f"\nokx freqtrade: {got['trade']} after {got['seconds']:.0f} s; REST {rest}")


def test_checksum_is_okxs_signed_crc32_of_interleaved_strings():
    bids, asks = [("3366.1", "7"), ("3366", "6")], [("3366.8", "9")]
    text = "3366.1:7:3366.8:9:3366:6"
    crc = zlib.crc32(text.encode())
    assert okx_checksum(bids, asks) == (crc - (1 << 32) if crc >= 1 << 31 else crc)
