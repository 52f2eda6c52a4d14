"""The local exchange speaks Gate.io v4 spot as ccxt 4.5.90's ``gate`` client and the live feed read it.

How ccxt follows a Gate spot book: ``watch_order_book`` subscribes the order book v2 channel ``spot.obu``
(``ob.BTC_USDT.400`` with the option Helios sets, ``ob.BTC_USDT.50`` by default), gets the top-N book by
websocket (``"full": true``) and applies the deltas after it. Its books carry Gate's update id as ``nonce``,
so every observed book is compared with the server's book at that id (``book_at``), not by freezing.
ccxt checks nothing on ``spot.obu`` but ``u <= nonce`` (a repeat, skipped): a lost or late message leaves its
book silently wrong. Gate's rule (``U == previous u + 1``, else resubscribe) is for Helios to apply: the test
``test_the_feed_declares_an_obu_id_jump_as_a_gap`` shows ``live/gate_book_check.py`` doing so (every fault on the
feed: tests/test_venue_feed_faults.py).

The other book channel, ``spot.order_book_update`` with a REST ``with_id`` snapshot, is ccxt's for Gate's EU
host only (a spot URL containing ``gateeu``); pointed there, ccxt checks ``U``/``u`` and raises
``ChecksumError``, and the ``stale`` snapshot fault applies.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import pytest

from helios_orderflow.emulator.dialects import dialect_class
from helios_orderflow.emulator.instruments import instrument
from helios_orderflow.live import gate_book_check
from tests.exchange_fixtures import (
    FOLLOW_S,
    MIN_CHECKS,
    assert_every_trade_once,
    assert_serves,
    ccxt_client,
    converge,
    errors_of,
    exchange_process,
    feed_declares_gaps,
    feed_rebuilds_the_servers_books,
    follow_books,
    synthetic_recording,
    synthetic_server,
    trades_published,
    with_every_trade,
)
from tests.venue_dry_run import freqtrade_dry_run_opens_a_trade
from tests.waits import HANG_S, beside, read_ws_until

pytestmark = pytest.mark.integration

VENUE = "gate"
#: HC/USDT: a base the instrument table does not know, listed at ~2.52 with a 0.001 tick (~4 bp a tick): a thin
#: small-cap book like Gate's (INK/USDT, the capture's small cap, gets ~33.3 with the same tick, 0.3 bp).
PAIRS = ["BTC/USDT", "ETH/USDT", "HC/USDT"]


def ws_url(handle: Any, query: str = "") -> str:
    return handle.url.replace("http://", "ws://", 1) + "/ws/v4/" + query


def eu_client(handle: Any) -> Any:
    """ccxt's gate client on its EU code path: ``spot.order_book_update`` diffs synced from a REST snapshot of
    1000 levels (ccxt snapshots the subscription's ``limit``; its default, 50, is too shallow for a top 100)."""
    ex = ccxt_client(handle)
    ex.urls["api"]["spot"] = ws_url(handle, "?gateeu")  # ccxt picks the channel by 'gateeu' in the URL
    ex.options["watchOrderBook"]["interval"] = "100ms"
    ex.watch_order_book = functools.partial(ex.watch_order_book, limit=1000)
    return ex


async def raw_book_ids(handle: Any, stop: asyncio.Event, stream: str = "ob.BTC_USDT.400") -> list[tuple[int, int]]:
    """(U, u) of every ``spot.obu`` delta of ``stream`` a plain websocket client receives until ``stop`` is set
    (truncated frames are skipped)."""
    ids: list[tuple[int, int]] = []

    def take(text: str) -> None:
        try:
            d = json.loads(text)
        except ValueError:
            return
        r = d.get("result") or {}
        if d.get("channel") == "spot.obu" and "U" in r:
            ids.append((r["U"], r["u"]))

    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(handle)) as ws:
        await ws.send_str(json.dumps({"time": 0, "channel": "spot.obu", "event": "subscribe", "payload": [stream]}))
        await read_ws_until(ws, take, stop.is_set, HANG_S, "the followers to finish", closed_ok=True)
    return ids


def breaks(ids: list[tuple[int, int]]) -> int:
    return sum(1 for (_, u0), (u1, _) in itertools.pairwise(ids) if u1 != u0 + 1)


def repeats(ids: list[tuple[int, int]]) -> int:
    return sum(1 for a, b in itertools.pairwise(ids) if a == b)


# ---- REST --------------------------------------------------------------------------------------------------
def test_ccxt_reads_gate_spot_markets_books_candles_tickers_and_trades_over_rest():
    async def run(handle: Any) -> None:
        ex = ccxt_client(handle)
        try:
            markets = await ex.load_markets()
            assert all(m["spot"] and m["type"] == "spot" for m in markets.values())  # only spot is loaded
            btc = markets["BTC/USDT"]
            assert (btc["id"], btc["active"], btc["taker"]) == ("BTC_USDT", True, 0.002)
            assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 1e-05)
            assert (btc["limits"]["amount"]["min"], btc["limits"]["cost"]["min"]) == (1e-05, 5.0)
            hc = markets["HC/USDT"]
            assert (hc["precision"]["price"], hc["precision"]["amount"]) == (0.001, 0.01)
            assert hc["precision"]["price"] / instrument("HC/USDT").start_price > 1e-4  # a tick above 1 bp
            assert markets["INK/USDT"]["precision"]["price"] == 0.001  # an unknown base: the generic filters
            await trades_published(handle, {"BTC/USDT": 20})  # the 20 trades read below
            handle.freeze()
            ob = await ex.fetch_order_book("HC/USDT", 1000)
            last_id, bids, asks = handle.book("HC/USDT", 1000)
            assert (ob["nonce"], ob["bids"], ob["asks"]) == (last_id, bids, asks)
            # deeper than Gate's default page of 10 levels: the limit asked for is served (the thin HC/USDT book of
            # the calibrated market holds about 75 levels a side)
            assert len(bids) > 20 and bids[0][0] < asks[0][0]
            candles = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=250)
            assert len(candles) == 250 and all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
            assert candles[-1][0] == handle.server.now_ms() // 60_000 * 60_000  # the open candle is now's
            since = candles[-100][0]
            five = await ex.fetch_ohlcv("ETH/USDT", "5m", since=since)
            assert five[0][0] >= since and all(c[0] % 300_000 == 0 for c in five)
            tickers = await ex.fetch_tickers()
            assert set(tickers) == set(markets)
            assert (tickers["HC/USDT"]["bid"], tickers["HC/USDT"]["ask"]) == (bids[0][0], asks[0][0])
            trades = await ex.fetch_trades("BTC/USDT", limit=20)
            ids = [int(t["id"]) for t in trades]
            assert ids == handle.trade_ids("BTC/USDT")[-20:]  # the newest 20, oldest first after ccxt's sort
            assert {t["side"] for t in trades} <= {"buy", "sell"}
            assert await ex.fetch_time() == handle.server.now_ms()  # frozen: the clock stands still
            with pytest.raises(ccxt.BadRequest):  # Gate's INVALID_PARAM_VALUE: no 10 s candles here
                await ex.fetch_ohlcv("BTC/USDT", "10s")
            async with aiohttp.ClientSession() as session:
                url = f"{handle.url}/api/v4/spot/order_book?currency_pair=NOPE_USDT"
                async with session.get(url) as resp:
                    assert resp.status == 400
                    assert (await resp.json())["label"] == "INVALID_CURRENCY_PAIR"
        finally:
            await ex.close()

    with synthetic_server([*PAIRS, "INK/USDT"], venue=VENUE) as handle:
        asyncio.run(run(handle))


# ---- websocket protocol --------------------------------------------------------------------------------------
def test_websocket_acks_refuses_pongs_and_sends_contiguous_gate_ids():
    async def run(handle: Any) -> tuple[list[dict], dict[str, list[dict]]]:
        replies: list[dict] = []
        frames: dict[str, list[dict]] = {}

        def sub(rid: int, channel: str, payload: list[str]) -> str:
            return json.dumps({"time": 0, "id": rid, "channel": channel, "event": "subscribe", "payload": payload})

        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(handle)) as ws:
            await ws.send_str(sub(1, "spot.obu", ["ob.BTC_USDT.400"]))
            await ws.send_str(sub(2, "spot.obu", ["ob.BTC_USDT.400"]))  # twice on one connection
            await ws.send_str(sub(3, "spot.trades", ["BTC_USDT", "NOPE_USDT"]))
            await ws.send_str(sub(4, "spot.trades", ["BTC_USDT"]))
            await ws.send_str(sub(5, "spot.order_book_update", ["BTC_USDT", "100ms"]))
            await ws.send_str(sub(6, "spot.book_ticker", ["BTC_USDT"]))
            await ws.send_str(sub(7, "spot.candlesticks", ["1m", "BTC_USDT"]))
            await ws.send_str(json.dumps({"time": 0, "channel": "spot.ping"}))
            await ws.send_str("{not json")
            def take(text: str) -> None:
                d = json.loads(text)
                if d.get("event") == "update":
                    frames.setdefault(d["channel"], []).append(d)
                else:
                    replies.append(d)

            def done() -> bool:  # every reply, and enough of every stream for the checks below
                ids = {r.get("id") for r in replies}
                return (ids >= set(range(1, 8)) and any(r["channel"] == "spot.pong" for r in replies)
                        and any(r.get("error", {}).get("code") == 1 for r in replies)
                        and len(frames.get("spot.obu", [])) >= 26
                        and len(frames.get("spot.order_book_update", [])) >= 25
                        and len(frames.get("spot.trades", [])) >= 2
                        and all(frames.get(c) for c in ("spot.book_ticker", "spot.candlesticks")))

            await read_ws_until(ws, take, done, 60, "every reply, 26 obu frames, 25 diffs, 2 trades, a ticker "
                                                    "and a candle")
        return replies, frames

    with synthetic_server(["BTC/USDT"], venue=VENUE) as handle:
        replies, frames = asyncio.run(run(handle))
    by_id = {r.get("id"): r for r in replies}
    assert by_id[1]["result"] == {"status": "success"} and "error" not in by_id[1]
    assert by_id[2]["error"] == {"code": 2, "message": "Alert sub ob.BTC_USDT.400"}  # as Gate refuses it
    assert by_id[3]["error"]["message"] == "unknown currency pair: NOPE_USDT"
    assert all(by_id[i]["result"] == {"status": "success"} for i in (4, 5, 6, 7))
    assert any(r["channel"] == "spot.pong" for r in replies)
    assert any(r.get("error", {}).get("code") == 1 for r in replies)  # the malformed request, connection kept
    obu = [f["result"] for f in frames["spot.obu"]]
    assert obu[0]["full"] is True and "U" not in obu[0] and len(obu) >= 25
    assert obu[1]["U"] == obu[0]["u"] + 1 and all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(obu[1:]))
    diffs = [f["result"] for f in frames["spot.order_book_update"]]
    n = min(len(diffs), len(obu) - 1)  # one book, one id chain (the read may end between the two streams)
    assert n >= 25 and [(d["U"], d["u"]) for d in diffs[:n]] == [(d["U"], d["u"]) for d in obu[1:n + 1]]
    assert diffs[0]["e"] == "depthUpdate" and diffs[0]["s"] == "BTC_USDT"
    trades = [f["result"] for f in frames["spot.trades"]]
    assert trades and all(b["id"] == a["id"] + 1 for a, b in itertools.pairwise(trades))
    assert set(trades[0]) >= {"id", "create_time", "create_time_ms", "side", "currency_pair", "amount", "price"}
    ticker = frames["spot.book_ticker"][-1]["result"]
    assert set(ticker) == {"t", "u", "s", "b", "B", "a", "A"} and ticker["u"] <= obu[-1]["u"]
    candle = frames["spot.candlesticks"][-1]["result"]
    assert candle["n"] == "1m_BTC_USDT" and int(candle["t"]) % 60 == 0 and candle["w"] is False


# ---- the acceptance minute -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_ccxt_follows_three_pairs_for_a_minute_on_both_obu_depths_with_every_trade_once():
    """Client A has Helios's options (``ob.X.400``: top 100 compared), client B ccxt's defaults (``ob.X.50``:
    top 50); both match books by ``nonce``. A also collects trades (``watch_trades``)."""

    async def run(handle: Any) -> tuple[dict, dict, dict, dict, dict]:
        deep, default = ccxt_client(handle), ccxt_client(handle)
        default.options["watchOrderBook"].pop("interval", None)

        async def books() -> tuple[dict, dict, dict]:
            stats_deep, stats_default = await asyncio.gather(
                follow_books(deep, handle, PAIRS, FOLLOW_S - 0.5, depth=100),
                follow_books(default, handle, PAIRS, FOLLOW_S - 0.5, depth=50))
            return stats_deep, stats_default, await converge(deep, handle, PAIRS)  # freezes the market

        try:
            await asyncio.gather(deep.load_markets(), default.load_markets())
            (stats_deep, stats_default, converged), got, sent = await with_every_trade(handle, [(deep, PAIRS)], books)
            subs = dict(handle.log.subscriptions)
        finally:
            await deep.close()
            await default.close()
        return stats_deep, stats_default, converged, {"got": got, "sent": sent}, subs

    t0 = time.monotonic()
    with synthetic_server(PAIRS, seed=9, venue=VENUE) as handle:
        stats_deep, stats_default, converged, trades, subs = asyncio.run(run(handle))
    took = time.monotonic() - t0
    assert {"ob.BTC_USDT.400", "ob.BTC_USDT.50", "spot.trades:HC_USDT"} <= set(subs)
    for stats in (stats_deep, stats_default):
        for sym in PAIRS:
            s = stats[sym]
            assert s.mismatches == 0, (sym, s.first_mismatch)
            assert s.checks >= MIN_CHECKS, (sym, s.checks)
            assert not s.errors, (sym, s.errors)
    assert converged == dict.fromkeys(PAIRS, True)
    assert_every_trade_once(trades["got"], trades["sent"], 300)
    print(f"gate minute: checks top100 {[stats_deep[s].checks for s in PAIRS]}, top50 "
          f"{[stats_default[s].checks for s in PAIRS]}, trades {[len(trades['got'][s]) for s in PAIRS]}, "
          f"{took:.0f} s")


# ---- faults ------------------------------------------------------------------------------------------------
async def follow_with_fault(handle: Any, client: Any, seconds: float, depth: int = 100) -> tuple[dict, list]:
    """Follow ``PAIRS[:2]`` for ``seconds`` while a raw client records the BTC ``ob.X.400`` ids (until the
    follow ends)."""
    await client.load_markets()
    return await beside(follow_books(client, handle, PAIRS[:2], seconds, depth=depth),
                        lambda stop: raw_book_ids(handle, stop))


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "wrong"), [("gap=1/15,dup=1/10", False), ("drop=1/15,reorder=1/20", True)])
def test_obu_chain_breaks_reach_ccxt_as_gate_shows_them_and_a_resubscription_recovers(spec: str, wrong: bool):
    """gap and dup leave ccxt's book right (a jump loses no level; a repeat is skipped); drop and reorder make
    it silently wrong, since ccxt 4.5.90 does not check ``U`` on ``spot.obu``. A new subscription (a new full
    book) puts it right."""

    async def run(handle: Any) -> tuple[dict, list, dict, dict]:
        ex = ccxt_client(handle)
        try:
            stats, ids = await follow_with_fault(handle, ex, 6.0)
            handle.call(lambda: setattr(handle.server.faults, "after_s", 1e12))  # the fault clears
            await ex.close_ws_clients()  # what Gate asks for (resubscribe) and Helios's check would do
            converged = await converge(ex, handle, PAIRS[:2])
        finally:
            await ex.close()
        return stats, ids, converged, handle.fault_counts()

    with synthetic_server(PAIRS[:2], seed=3, faults=f"{spec},after=1", venue=VENUE) as handle:
        stats, ids, converged, counts = asyncio.run(run(handle))
    assert breaks(ids) >= 1  # a raw client sees U != previous u + 1
    assert errors_of(stats) == {}  # ccxt raises nothing
    for kind in (item.split("=")[0] for item in spec.split(",")):
        assert counts[kind] >= 3, counts
    if wrong:
        assert sum(s.mismatches for s in stats.values()) >= 1
    else:
        assert repeats(ids) >= 1
        assert all(s.mismatches == 0 and s.checks > 20 for s in stats.values()), stats
    assert converged == dict.fromkeys(PAIRS[:2], True)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "error"), [
    ("crossed=1/40", ""), ("malformed=1/20", "Stall"), ("disconnect=2", "NetworkError"),
    ("noping=1.5", "RequestTimeout")])
def test_connection_faults_reach_ccxt_and_its_book_converges(spec: str, error: str):
    keep_alive_ms = 500 if spec.startswith("noping") else None

    async def run(handle: Any) -> tuple[dict, dict]:
        ex = ccxt_client(handle, keep_alive_ms=keep_alive_ms)
        try:
            stats, _ = await follow_with_fault(handle, ex, 7.0)
            converged = await converge(ex, handle, PAIRS[:2])
        finally:
            await ex.close()
        return stats, converged

    with synthetic_server(PAIRS[:2], seed=3, faults=f"{spec},after=1", venue=VENUE) as handle:
        stats, converged = asyncio.run(run(handle))
        counts = handle.fault_counts()
    for sym, s in stats.items():
        assert s.mismatches == 0, (sym, s.first_mismatch)  # every book after a new full one is exact again
        assert s.checks > 5
    if spec.startswith("crossed"):
        assert counts["crossed"] >= 2 and sum(s.crossed_seen for s in stats.values()) >= 1
    else:
        assert errors_of(stats).get(error, 0) >= 1, errors_of(stats)
    assert converged == dict.fromkeys(PAIRS[:2], True)


@pytest.mark.slow
def test_rest_faults_reach_rest_callers_as_gate_errors_and_leave_the_websocket_book_alone():
    async def run(handle: Any) -> tuple[list[str], dict]:
        ex = ccxt_client(handle)
        errors: list[str] = []
        try:
            for _ in range(6):  # markets first: ccxt retries nothing, so loop until they load
                try:
                    await ex.load_markets()
                    break
                except ccxt.BaseError:
                    continue
            for _ in range(6):
                for call in (ex.fetch_order_book("BTC/USDT", 100), ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)):
                    try:
                        await call
                    except ccxt.BaseError as exc:
                        errors.append(type(exc).__name__)
            stats = await follow_books(ex, handle, PAIRS[:2], 3.0)
        finally:
            await ex.close()
        return errors, stats

    for spec, error in (("rest429=1/2", "RateLimitExceeded"), ("rest5xx=1/2", "ExchangeNotAvailable")):
        with synthetic_server(PAIRS[:2], seed=3, faults=spec, venue=VENUE) as handle:
            errors, stats = asyncio.run(run(handle))
        assert errors.count(error) == 6 and set(errors) == {error}, errors  # every 2nd request of each path
        assert all(s.checks > 10 and s.mismatches == 0 and not s.errors for s in stats.values()), stats


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["drop=1/15", "stale=0.5,drop=1/20"])
def test_the_eu_channel_syncs_from_rest_and_ccxt_raises_on_a_broken_chain(spec: str):
    """``spot.order_book_update`` (ccxt's EU path): a dropped diff is a ``ChecksumError`` and a new REST snapshot;
    a stale snapshot (older than ccxt's buffered diffs) costs ccxt a retry or a failed sync."""

    async def run(handle: Any) -> tuple[dict, dict]:
        ex = eu_client(handle)
        try:
            await ex.load_markets()
            stats = await follow_books(ex, handle, PAIRS[:2], 8.0)
            handle.call(lambda: setattr(handle.server.faults, "after_s", 1e12))  # the fault clears
            # ccxt takes its snapshot after 10 buffered diffs: it resyncs only on a moving market, so the
            # market runs on before converge freezes it
            await follow_books(ex, handle, PAIRS[:2], 3.0)
            converged = await converge(ex, handle, PAIRS[:2])
        finally:
            await ex.close()
        return stats, converged

    with synthetic_server(PAIRS[:2], seed=3, faults=f"{spec},after=1", venue=VENUE) as handle:
        stats, converged = asyncio.run(run(handle))
        counts = handle.fault_counts()
        snapshots = handle.log.rest_by_path.get("/api/v4/spot/order_book", 0)
        subs = dict(handle.log.subscriptions)
    assert "spot.order_book_update:BTC_USDT:100ms" in subs and not any(k.startswith("ob.") for k in subs)
    assert errors_of(stats).get("ChecksumError", 0) >= 2
    assert snapshots >= len(PAIRS[:2]) + 2  # a snapshot per resync
    if "stale" in spec:  # ccxt refuses each stale snapshot (its id is behind the buffered diffs) and fetches again
        assert counts["stale"] >= 1 and snapshots >= len(PAIRS[:2]) + counts["stale"] - 1
    for sym, s in stats.items():
        assert s.mismatches == 0 and s.checks > 20, (sym, s.first_mismatch, s.checks)
    assert converged == dict.fromkeys(PAIRS[:2], True)


# ---- the live feed ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_feed_follows_three_gate_pairs_and_its_recording_rebuilds_the_servers_books(tmp_path: Path):
    """Healthy over 200 book updates a pair (~20 s); every recorded book state equals the server's top 100 at its
    ``u``; Gate's trade ids in order, once; the ``U``/``u`` check never fires (tests/exchange_fixtures.py says what
    is held)."""
    run = feed_rebuilds_the_servers_books(VENUE, PAIRS, tmp_path)
    print(f"gate feed: book states compared {run.compared}, trades {run.trades}")


#: Gate's chain rule as the feed applies it (``live/gate_book_check.py``), used by the ccxt-level tests too.
proposed_gate_book_check = gate_book_check.check


@pytest.mark.slow
def test_the_feed_declares_an_obu_id_jump_as_a_gap(tmp_path: Path):
    feed_declares_gaps(VENUE, PAIRS[:2], tmp_path)


# ---- helios exchange --venue gate -------------------------------------------------------------------------------
@pytest.mark.slow
def test_helios_exchange_serves_gate_synthetic_and_replayed_and_reports_gates_ids(tmp_path: Path):
    rec = synthetic_recording(tmp_path / "rec", "ETH/USDT", int(time.time()) * 1_000_000, 60_000_000)
    for args, symbol in ((["--synthetic", "--symbols", "BTC/USDT", "HC/USDT"], "HC/USDT"),
                         (["--replay", str(rec)], "ETH/USDT")):
        with exchange_process(VENUE, args, tmp_path / f"exchange-{args[0].strip('-')}.log", symbol) as proc:
            wire = dialect_class(VENUE).wire(instrument(symbol))
            with urllib.request.urlopen(f"{proc.url}/api/v4/spot/order_book?currency_pair={wire}&limit=5&"
                                        "with_id=true") as resp:
                snapshot = json.load(resp)
            assert_serves(proc, VENUE, symbol, snapshot["id"])


# ---- Freqtrade ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_freqtrade_dry_run_with_helios_strategy_opens_a_trade_on_gate(tmp_path: Path):
    got = freqtrade_dry_run_opens_a_trade(VENUE, tmp_path)
    rest, subs = got["rest"], got["subscriptions"]
    # Freqtrade 2026.9 streams candles only where its exchange class sets ws_enabled (not Gate's): it polls them
    assert rest["/api/v4/spot/currency_pairs"] >= 1 and rest["/api/v4/spot/candlesticks"] >= 4
    assert not any(k.startswith("spot.candlesticks") for k in subs), subs
    assert {"ob.BTC_USDT.400", "ob.ETH_USDT.400", "spot.trades:BTC_USDT", "spot.book_ticker:BTC_USDT"} <= set(subs)
    print(f"\ngate freqtrade: {got['trade']} after {got['seconds']:.0f} s; REST {rest}")

