"""Acceptance of the local exchange with real clients: ccxt.pro follows 3 symbols for 60 s on a synthetic and
a replayed market at once (books equal the server's, every trade delivered); the replayed real BTCUSDT book
equals Helios's own rebuild of the recorded data; and a real ``freqtrade trade --dry-run`` runs 2 minutes
against the local exchange with no error."""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.events import BookDelta, BookSnapshot, Trade
from helios_orderflow.emulator import start_in_thread
from helios_orderflow.emulator.process import start_subprocess
from helios_orderflow.emulator.replay import ReplaySource
from helios_orderflow.emulator.server import ccxt_urls
from helios_orderflow.emulator.synth import synth_events
from helios_orderflow.importers import ImportStats, iter_import
from helios_orderflow.recording.reader import read_events
from helios_orderflow.recording.writer import RecordingWriter
from tests._signals import interruptible
from tests.exchange_fixtures import (
    SYMBOLS,
    assert_every_trade_once,
    ccxt_client,
    converge,
    follow_books,
    synthetic_server,
    with_every_trade,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
REPLAY_SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
FOLLOW_S = 62.0
SPEED = 8.0


@pytest.fixture(scope="module")
def mixed_recording(tmp_path_factory, btcusdt_files) -> Path:
    """The real Binance BTCUSDT capture (11 min) plus synthetic ETH/USDT and SOL/USDT over the same span,
    as one Helios recording."""
    real = list(iter_import("binance-raw", btcusdt_files, stats=ImportStats(), progress=False))
    first = real[0].local_ts_us
    span = real[-1].local_ts_us - first
    synth = synth_events(["ETH/USDT", "SOL/USDT"], 4, first, span)
    root = tmp_path_factory.mktemp("mixed") / "rec"
    with RecordingWriter(root, flush_by_time=False) as writer:
        for ev in heapq.merge(real, synth, key=lambda e: e.local_ts_us):
            writer.write(ev)
    return root


async def follow_all(handle, symbols: list[str], seconds: float):
    ex = ccxt_client(handle)

    async def books():
        stats = await follow_books(ex, handle, symbols, seconds - 0.5)
        return stats, await converge(ex, handle, symbols)  # freezes the market

    try:
        await ex.load_markets()
        (stats, converged), got, sent = await with_every_trade(handle, [(ex, symbols)], books)
    finally:
        await ex.close()
    return stats, converged, got, sent


def check_follow(symbols, stats, converged, got, sent) -> None:
    for sym in symbols:
        s = stats[sym]
        assert s.mismatches == 0, (sym, s.first_mismatch)
        assert s.checks >= 200, (sym, s.checks)  # compared at >= 200 update ids over the minute
        assert not s.errors, (sym, s.errors)
    assert_every_trade_once(got, sent, 300)
    assert converged == {s: True for s in symbols}


def test_ccxt_follows_three_symbols_for_a_minute_on_synthetic_and_replayed_markets(mixed_recording: Path):
    replay = ReplaySource(mixed_recording, speed=SPEED, history_minutes=60)
    with synthetic_server(SYMBOLS, seed=9) as synth_handle, \
            start_in_thread(replay, record=True) as replay_handle:
        async def both():
            return await asyncio.gather(follow_all(synth_handle, SYMBOLS, FOLLOW_S),
                                        follow_all(replay_handle, REPLAY_SYMBOLS, FOLLOW_S))

        synth_result, replay_result = asyncio.run(both())
        check_follow(SYMBOLS, *synth_result)
        check_follow(REPLAY_SYMBOLS, *replay_result)
        replay_handle.freeze()
        # the replayed real book is the book Helios's own sequence rules rebuild from the same events
        consumed = replay_handle.call(lambda: replay.consumed)
        _, srv_bids, srv_asks = replay_handle.book("BTC/USDT", 100_000)
    sync = BookSync()
    trades = 0
    for k, ev in enumerate(read_events(mixed_recording)):
        if k >= consumed:
            break
        if ev.symbol != "BTC/USDT":
            continue
        if isinstance(ev, BookSnapshot):
            sync.on_snapshot(ev)
        elif isinstance(ev, BookDelta):
            sync.on_delta(ev)
        elif isinstance(ev, Trade):
            trades += 1
    bids, asks = sync.book.top()
    assert sync.gaps == 0 and len(bids) > 900
    assert srv_bids == [list(b) for b in bids] and srv_asks == [list(a) for a in asks]
    assert trades > 10_000  # most of the 11-minute capture was played in the minute


def test_freqtrade_dry_run_trades_two_minutes_against_the_local_exchange(tmp_path: Path):
    exchange = start_subprocess(["--synthetic", "--symbols", "BTC/USDT", "ETH/USDT", "SOL/USDT", "--seed", "5"],
                                tmp_path / "exchange.log")
    try:
        config = json.loads((ROOT / "user_data" / "config.dryrun-local.json").read_text())
        config["exchange"]["ccxt_config"]["urls"] = ccxt_urls(exchange.url)
        cfg_path = tmp_path / "config.json"
        cfg_path.write_text(json.dumps(config))
        userdir = tmp_path / "user_data"
        userdir.mkdir()
        log = tmp_path / "freqtrade.log"
        freqtrade = Path(sys.executable).parent / "freqtrade"
        out = open(tmp_path / "freqtrade.out", "w")  # the child writes it until it exits
        # freqtrade configures no log file when it sees PYTEST_VERSION (its own test mode)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        proc = subprocess.Popen(
            [str(freqtrade), "trade", "--dry-run", "-c", str(cfg_path), "--userdir", str(userdir),
             "--strategy-path", str(ROOT / "user_data" / "strategies"),
             "--db-url", f"sqlite:///{tmp_path / 'trades.sqlite'}", "--logfile", str(log)],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env, preexec_fn=interruptible,
        )
        deadline = time.monotonic() + 125
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "freqtrade.out").read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        exchange.stop()
    text = log.read_text()
    errors = [line for line in text.splitlines() if " - ERROR - " in line or "Traceback" in line]
    assert errors == []
    assert text.count("Bot heartbeat") >= 2
    assert "Using resolved strategy LocalSmokeStrategy" in text
    summary = exchange.log_path.read_text()
    rest = json.loads(summary.split("REST requests ", 1)[1].splitlines()[0])
    assert rest["/api/v3/exchangeInfo"] >= 1
    assert rest["/api/v3/klines"] >= 3  # each pair's history loaded from the local exchange
    subs = json.loads(summary.split("subscriptions ", 1)[1].split("; ")[0])
    assert {"btcusdt@kline_1m", "ethusdt@kline_1m", "solusdt@kline_1m"} <= set(subs)
    kline_msgs = int(summary.split("; ", 2)[-1].split(" kline messages")[0].split()[-1])
    assert kline_msgs >= 3 * 100  # two minutes of candle updates streamed to the bot
    with sqlite3.connect(tmp_path / "trades.sqlite") as db:
        rates = [r[0] for r in db.execute("select open_rate from trades")]
    # the bot entered, priced from the local order books (synthetic prices near their start prices)
    assert rates
    for rate in rates:
        assert any(abs(rate / p - 1) < 0.05 for p in (60000.0, 3000.0, 150.0)), rate
