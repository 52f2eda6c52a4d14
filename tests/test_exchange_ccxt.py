"""The local exchange speaks Binance as real clients read it: ccxt's REST parsing (markets, filters, books,
candles, tickers, trades), the futures ``pu`` stream, and the websocket protocol itself."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import aiohttp
import ccxt.pro as ccxtpro
import pytest

from helios_orderflow.emulator import SyntheticSource, start_in_thread
from tests.exchange_fixtures import ccxt_client, converge, follow_books, synthetic_server
from tests.waits import wait_for, wait_for_async

pytestmark = pytest.mark.integration


def test_ccxt_reads_markets_books_candles_tickers_and_trades_over_rest():
    async def run(handle):
        ex = ccxt_client(handle)
        try:
            markets = await ex.load_markets()
            btc = markets["BTC/USDT"]
            assert (btc["id"], btc["spot"], btc["active"]) == ("BTCUSDT", True, True)
            assert (btc["precision"]["price"], btc["precision"]["amount"]) == (0.01, 1e-05)
            assert btc["limits"]["cost"]["min"] == 5.0
            # let trades happen: the 20 aggregate trades of SOL/USDT read below
            await wait_for_async(lambda: handle.call(lambda: len(handle.server.state("SOL/USDT").agg_trades)) >= 20,
                                 60, "20 aggregate trades of SOL/USDT")
            handle.freeze()
            ob = await ex.fetch_order_book("BTC/USDT", 5000)
            last_id, bids, asks = handle.book("BTC/USDT", 5000)
            assert ob["nonce"] == last_id and ob["bids"] == bids and ob["asks"] == asks
            assert len(bids) > 100 and bids[0][0] < asks[0][0]
            candles = await ex.fetch_ohlcv("BTC/USDT", "1m", limit=250)
            assert len(candles) == 250
            assert all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
            assert candles[-1][0] == handle.server.now_ms() // 60_000 * 60_000  # the open candle is now's
            five = await ex.fetch_ohlcv("ETH/USDT", "5m", limit=50)
            assert len(five) == 50 and all(c[0] % 300_000 == 0 for c in five)
            tickers = await ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
            assert tickers["BTC/USDT"]["bid"] == bids[0][0] and tickers["BTC/USDT"]["ask"] == asks[0][0]
            trades = await ex.fetch_trades("SOL/USDT", limit=20)  # aggregate trades
            # ccxt orders equal timestamps by id as a string ('100' < '96'), hence sorted()
            ids = sorted(int(t["id"]) for t in trades)
            assert len(ids) == 20 and ids == list(range(ids[0], ids[0] + 20))
            assert all(a["timestamp"] <= b["timestamp"] for a, b in itertools.pairwise(trades))
            server_time = await ex.fetch_time()
            assert server_time == handle.server.now_ms()  # frozen: the server's clock stands still
        finally:
            await ex.close()

    with synthetic_server() as handle:
        asyncio.run(run(handle))


@pytest.mark.slow
def test_futures_book_follows_the_pu_chain_and_converges():
    async def run(handle):
        ex = ccxtpro.binance(dict(handle.ccxt_config("linear"), enableRateLimit=False))
        try:
            markets = await ex.load_markets()
            assert markets["BTC/USDT:USDT"]["linear"] and markets["BTC/USDT:USDT"]["precision"]["price"] == 0.1
            stats = await follow_books(ex, handle, ["BTC/USDT:USDT", "ETH/USDT:USDT"], 5.0)
            assert all(s.checks > 20 and s.mismatches == 0 and not s.errors for s in stats.values()), stats
            assert await converge(ex, handle, ["BTC/USDT:USDT", "ETH/USDT:USDT"]) == {
                "BTC/USDT:USDT": True, "ETH/USDT:USDT": True}
            before_ms = handle.server.now_ms() // 60_000 * 60_000
            candles = await ex.fetch_ohlcv("BTC/USDT:USDT", "1m", limit=1500)
            after_ms = handle.server.now_ms() // 60_000 * 60_000
            # The 300 back-filled candles, then one a minute since serving began, up to the open candle of the
            # server's minute (the test runs for seconds, so a minute boundary may have passed).
            origin_minute_ms = handle.server.source.origin_us // 60_000_000 * 60_000
            assert candles[0][0] == origin_minute_ms - 300 * 60_000
            assert all(b[0] - a[0] == 60_000 for a, b in itertools.pairwise(candles))
            assert before_ms <= candles[-1][0] <= after_ms
        finally:
            await ex.close()

    with synthetic_server(["BTC/USDT:USDT", "ETH/USDT:USDT"]) as handle:
        asyncio.run(run(handle))


def test_websocket_acks_subscriptions_and_sends_binance_frames_in_sequence():
    async def run(url: str):
        frames: dict[str, list[dict]] = {}
        acks = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/stream?streams=btcusdt@depth@100ms/btcusdt@trade") as ws:
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "id": 7, "params": [
                    "btcusdt@depth", "btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@kline_1m"]}))
                await ws.send_str(json.dumps({"method": "SUBSCRIBE", "id": 8, "params": ["nosuch@trade"]}))
                await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 9}))
                end = time.monotonic() + 3.5
                while time.monotonic() < end:
                    msg = await ws.receive(timeout=2)
                    d = json.loads(msg.data)
                    if "stream" in d:
                        frames.setdefault(d["stream"], []).append(d["data"])
                    else:
                        acks.append(d)
                await ws.send_str(json.dumps({"method": "UNSUBSCRIBE", "id": 10, "params": ["btcusdt@trade"]}))
                while True:
                    d = json.loads((await ws.receive(timeout=2)).data)
                    if d.get("id") == 10:
                        acks.append(d)
                        break
            async with session.ws_connect(f"{url}/ws/ethusdt@trade") as raw:
                first = json.loads((await raw.receive(timeout=3)).data)
        return frames, acks, first

    with synthetic_server() as handle:
        frames, acks, raw_first = asyncio.run(run(handle.url))
    assert acks[0] == {"result": None, "id": 7}
    assert acks[1]["id"] == 8 and acks[1]["error"]["code"] == 2
    assert acks[2] == {"result": sorted(["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@depth",
                                         "btcusdt@aggTrade", "btcusdt@bookTicker", "btcusdt@kline_1m"]), "id": 9}
    assert acks[3] == {"result": None, "id": 10}
    fast = frames["btcusdt@depth@100ms"]
    assert len(fast) >= 25 and all(d["e"] == "depthUpdate" and "pu" not in d for d in fast)
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(fast))
    slow = frames["btcusdt@depth"]
    assert 2 <= len(slow) <= 4 and all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(slow))
    trades = frames["btcusdt@trade"]
    assert all(b["t"] == a["t"] + 1 for a, b in itertools.pairwise(trades))
    aggs = frames["btcusdt@aggTrade"]
    assert all(b["a"] == a["a"] + 1 and b["f"] == a["l"] + 1 for a, b in itertools.pairwise(aggs))
    assert set(frames["btcusdt@bookTicker"][0]) == {"u", "s", "b", "B", "a", "A"}
    k = frames["btcusdt@kline_1m"][-1]
    assert k["e"] == "kline" and k["k"]["i"] == "1m" and k["k"]["t"] % 60_000 == 0
    assert raw_first["e"] == "trade" and raw_first["s"] == "ETHUSDT"  # /ws frames are not wrapped


def test_server_thread_starts_on_a_free_port_reports_its_book_and_stops_cleanly():
    import urllib.request

    handle = start_in_thread(SyntheticSource(["BTC/USDT"], seed=1, history_minutes=10))
    url = handle.url
    assert url.startswith("http://127.0.0.1:")
    first_id = handle.book("BTC/USDT", 20)[0]
    wait_for(lambda: handle.book("BTC/USDT", 20)[0] > first_id, 30, "the market to step")  # a book that moved
    handle.freeze()
    with urllib.request.urlopen(f"{url}/helios/state?symbol=BTC/USDT&limit=20") as resp:
        state = json.load(resp)
    last_id, bids, asks = handle.book("BTC/USDT", 20)
    assert (state["lastUpdateId"], state["bids"], state["asks"]) == (last_id, bids, asks)
    handle.stop()
    assert not handle.thread.is_alive()


@pytest.mark.slow
def test_replay_loop_seam_keeps_ids_continuous_so_ccxt_never_resyncs(tmp_path):
    from helios_orderflow.emulator.replay import ReplaySource
    from helios_orderflow.emulator.synth import write_synthetic

    write_synthetic(str(tmp_path / "rec"), ["BTC/USDT", "ETH/USDT"], 8, 1_704_067_200_000_000, 3_000_000)
    source = ReplaySource(tmp_path / "rec", speed=2.0, loop=True, history_minutes=30)

    async def run(handle):
        ex = ccxt_client(handle)
        try:
            await ex.load_markets()
            stats = await follow_books(ex, handle, ["BTC/USDT", "ETH/USDT"], 6.0)
            converged = await converge(ex, handle, ["BTC/USDT", "ETH/USDT"])
        finally:
            await ex.close()
        return stats, converged

    with start_in_thread(source, record=True) as handle:
        stats, converged = asyncio.run(run(handle))
        passes = handle.call(lambda: source.passes)
        depth_fetches = handle.log.rest_by_path.get("/api/v3/depth", 0)
    assert passes >= 2  # a 3 s recording (1.5 s at speed 2, + 1 s seam) played over and over
    for s in stats.values():
        assert s.checks > 30 and s.mismatches == 0 and not s.errors
    assert depth_fetches == 2  # one snapshot per symbol: the seams never broke the sequence
    assert converged == {"BTC/USDT": True, "ETH/USDT": True}


def test_exchange_command_prints_its_urls_and_stops_cleanly_on_sigterm(tmp_path):
    import signal

    from helios_orderflow.emulator import start_subprocess

    proc = start_subprocess(["--synthetic", "--symbols", "BTC/USDT", "--history-minutes", "10"],
                            tmp_path / "exchange.log")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=15) == 0
    text = (tmp_path / "exchange.log").read_text()
    config = json.loads(text.split("ccxt_config for Freqtrade / ccxt (spot): ", 1)[1].splitlines()[0])
    assert config["urls"]["api"]["public"] == f"{proc.url}/api/v3"
    assert config["urls"]["api"]["ws"]["spot"] == proc.url.replace("http", "ws") + "/stream"
    assert "helios exchange: stopped;" in text and "Traceback" not in text


def test_exchange_command_warms_its_market_up_before_serving(tmp_path):
    import urllib.request

    from helios_orderflow.emulator import start_subprocess

    fresh = SyntheticSource(["BTC/USDT"], seed=0, history_minutes=0).states[0]
    with start_subprocess(["--synthetic", "--symbols", "BTC/USDT", "--history-minutes", "10",
                           "--warm-up-minutes", "10"], tmp_path / "exchange.log") as proc:
        with urllib.request.urlopen(f"{proc.url}/api/v3/depth?symbol=BTCUSDT&limit=5000", timeout=10) as r:
            depth = json.loads(r.read())
    served = len(depth["bids"]) + len(depth["asks"])
    assert served >= 1.2 * (len(fresh.bids) + len(fresh.asks))  # a lived-in book, not the seeded one
    assert depth["lastUpdateId"] > fresh.last_update_id + 50_000  # ten minutes of changes behind it
