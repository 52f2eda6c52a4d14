"""The soak's bot in the loop (issue 18): the whitelist it writes for Freqtrade's RemotePairList, what it reads
back from the bot's log, the disk window on a real tmpfs, and the comparison of a recording whose pairs left
and rejoined the feed and whose disk filled up (a real Parquet recording against a sent log)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helios_orderflow.core.events import BookDelta, BookSnapshot, Event, FeedGap, Trade
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.devtools.soak import bot
from helios_orderflow.devtools.soak.compare import LEFT_REASON, compare_recording
from helios_orderflow.devtools.soak.sent_log import DIGEST_LEVELS, book_digest, sent_record
from helios_orderflow.recording.recorder import PAUSE_GAP_REASON
from helios_orderflow.recording.writer import RecordingWriter

SYMBOLS = ["BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT", "LTC/USDT",
           "LINK/USDT", "AVAX/USDT"]


def test_the_whitelist_starts_with_every_pair_then_rotates_one_pair_out_and_one_in_per_change():
    assert bot.whitelist_at(SYMBOLS, 0) == SYMBOLS
    first = bot.whitelist_at(SYMBOLS, 1)
    assert len(first) == len(SYMBOLS) - bot.LEFT_OUT
    left_over_a_cycle: set[str] = set()
    for step in range(1, 2 * len(SYMBOLS)):
        before, after = set(bot.whitelist_at(SYMBOLS, step)), set(bot.whitelist_at(SYMBOLS, step + 1))
        assert len(before - after) == 1 and len(after - before) == 1
        left_over_a_cycle |= before - after
    assert left_over_a_cycle == set(SYMBOLS)  # every pair leaves (and rejoins) over a cycle


def test_whitelist_changes_end_one_period_before_the_run_so_the_last_is_seen():
    assert bot.whitelist_schedule(120.0, 120.0 + 1800.0, 90.0) == [120.0 + 90.0 * k for k in range(20)]
    assert bot.whitelist_schedule(120.0, 180.0, 20.0) == [120.0, 140.0, 160.0]


def test_the_pairlist_file_is_what_remote_pairlist_reads(tmp_path: Path):
    path = tmp_path / "pairs.json"
    bot.write_pairlist(path, ["BTC/USDT", "SOL/USDT"])
    assert json.loads(path.read_text()) == {"pairs": ["BTC/USDT", "SOL/USDT"],
                                            "refresh_period": bot.PAIRLIST_REFRESH_S}
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.json"]


def _line(t: float, text: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f",{int(t % 1 * 1000):03d}"
    return f"{stamp} - helios_orderflow.live.feed - INFO - {text}"


def test_the_bot_report_times_each_whitelist_change_and_the_pause_and_resume_from_the_bots_log(tmp_path: Path):
    loop = bot.BotLoop(tmp_path / "pairs.json", SYMBOLS[:4], [1000.0, 1100.0], (1050.0, 1070.0), None)
    loop.done = [(1000.0, bot.whitelist_at(SYMBOLS[:4], 1)), (1100.0, bot.whitelist_at(SYMBOLS[:4], 2))]
    loop.disk_filled_at, loop.disk_freed_at, loop.ballast_bytes = 1050.0, 1070.0, 3 << 20
    log = "\n".join([
        _line(1007.5, "helios feed on binance: pairs left: BTC/USDT, BNB/USDT, SOL/USDT"),
        "   wrapped by the console",
        _line(1055.0, "recording to /x paused: disk full (OSError: [Errno 28] No space left on device); ..."),
        _line(1072.0, "recording to /x resumed after 17 s paused: 900 events not recorded, declared as gaps"),
    ])
    report = bot.bot_loop_report(loop, log, None)
    assert report["whitelist_changes"] == 2 and report["whitelist_changes_seen"] == 1
    assert report["whitelist_longest_delay_s"] == 7.5
    # the second change (BNB joins, ETH leaves) never reached the feed: named
    assert report["whitelist_missed"][0].startswith("pairs joined: BNB/USDT; pairs left: ETH/USDT")
    assert report["recording_paused"] and report["recording_paused_after_s"] == 5.0
    assert report["recording_resumed"] and report["recording_resumed_after_s"] == 2.0
    assert report["disk_ballast_mb"] == 3.0
    assert bot.bot_loop_report(loop, log, "cannot mount")["disk_window"] == "skipped: cannot mount"


@pytest.fixture
def small_fs(tmp_path: Path):
    mnt = tmp_path / "small"
    why = bot.mount_small_fs(mnt, "4m")
    if why is not None:
        pytest.skip(why)
    try:
        yield mnt
    finally:
        bot.unmount(mnt)


def test_the_disk_window_fills_the_tmpfs_to_the_last_page_and_frees_it(small_fs: Path, tmp_path: Path):
    loop = bot.BotLoop(tmp_path / "pairs.json", SYMBOLS, [], (100.0, 200.0), small_fs / "ballast")
    loop.tick(99.0)
    assert loop.disk_filled_at is None
    loop.tick(100.0)
    assert loop.ballast_bytes > 3 << 20
    with pytest.raises(OSError, match="No space left"), open(small_fs / "more", "wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
    loop.tick(200.0)
    assert loop.disk_freed_at is not None and not (small_fs / "ballast").exists()


class _Market:
    """One symbol's exchange book: diff ``k`` sets one bid and one ask level; the sent log gets each diff."""

    def __init__(self, index: int, sent: list[bytes]) -> None:
        self.index, self.sent = index, sent
        self.bids = {100.0 - i: 1.0 for i in range(5)}
        self.asks = {101.0 + i: 1.0 for i in range(5)}
        self.last = 0

    def top(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return (sorted(self.bids.items(), reverse=True)[:DIGEST_LEVELS], sorted(self.asks.items())[:DIGEST_LEVELS])

    def diff(self, ts: int) -> BookDelta:
        k = self.last = self.last + 1
        bid, ask = (100.0 - k % 5, float(k)), (101.0 + k % 5, float(k) + 0.5)
        self.bids[bid[0]], self.asks[ask[0]] = bid[1], ask[1]
        self.sent.append(sent_record(self.index, k, k, ts // 1000, book_digest(*self.top())))
        return BookDelta("binance", SYMBOLS[self.index], ts, ts, k, k, -1, (bid,), (ask,))

    def snapshot(self, ts: int) -> BookSnapshot:
        bids, asks = self.top()
        return BookSnapshot("binance", SYMBOLS[self.index], ts, ts, self.last, tuple(bids), tuple(asks))


def test_a_pair_that_left_and_rejoined_and_a_disk_full_pause_lose_nothing_outside_their_declared_gaps(
        tmp_path: Path):
    sent: list[bytes] = []
    stays, moves = _Market(0, sent), _Market(1, sent)
    events: list[Event] = []
    clock = iter(range(1_000_000, 10**9, 1000))
    trade_id = {0: 0, 1: 0}

    def step(m: _Market, record: bool, extra: list[Event] | None = None) -> None:
        d = m.diff(next(clock))
        trade_id[m.index] += 1
        t = Trade("binance", SYMBOLS[m.index], d.ts_us, d.local_ts_us, 100.0, 1.0, "buy", str(trade_id[m.index]))
        if record:
            events.extend([d, t])

    def gap(m: _Market, reason: str) -> None:
        ts = next(clock)
        events.append(FeedGap("binance", SYMBOLS[m.index], ts, ts, reason))

    for m in (stays, moves):
        m.diff(next(clock))  # the exchange's first diff, before the feed's snapshot
        events.append(m.snapshot(next(clock)))
    for _ in range(10):
        step(stays, True)
        step(moves, True)
    gap(moves, LEFT_REASON)  # the pair leaves the whitelist: nothing of it is recorded ...
    for _ in range(10):
        step(stays, True)
        step(moves, False)
    events.append(moves.snapshot(next(clock)))  # ... until it rejoins with a fresh book
    for _ in range(5):
        step(moves, True)
    # the disk fills: 4 diffs not recorded, one queued at the resume written after the pause gap, then
    # the feed's resume gap and snapshot
    gap(moves, f"{PAUSE_GAP_REASON} (8 events not recorded)")
    for _ in range(4):
        step(moves, False)
    step(moves, True)
    gap(moves, "recording resumed after a pause")
    events.append(moves.snapshot(next(clock)))
    for _ in range(5):
        step(moves, True)
        step(stays, True)
    events.sort(key=lambda e: e.local_ts_us)
    with RecordingWriter(tmp_path / "rec", RecordingSettings(), flush_by_time=False) as w:
        for ev in events:
            w.write(ev)
    (tmp_path / "sent.bin").write_bytes(b"".join(sent))
    final = {SYMBOLS[m.index]: {"last_update_id": m.last, "last_trade_id": trade_id[m.index],
                                "digest": book_digest(*m.top())} for m in (stays, moves)}

    out = compare_recording(tmp_path / "rec", tmp_path / "sent.bin", SYMBOLS[:2], final)
    assert out["problems"] == []
    assert out["lost_book_diffs"] == 0 and out["lost_trades"] == 0 and out["wrong_books"] == 0
    assert out["book_sync_failures"] == 0 and out["final_books_equal"] == 2
    assert out["diffs_in_declared_gaps"] == 10 + 4 + 1  # away, lost to the full disk, the orphaned one
    assert out["trades_in_declared_gaps"] == 10 + 4
    assert out["gaps_pair_left"] == 1 and out["gaps_recording_paused"] == 1
    assert out["deltas_awaiting_snapshot"] == 1
    assert out["resyncs_measured"] == 0  # leaving and a full disk are not resyncs
    # every recorded book state but the orphaned delta: snapshot + 25 deltas, and 3 snapshots + 20 deltas
    assert out["book_states_checked"] == 26 + 23 and out["book_states_unverified"] == 0

    # the same recording with the moving pair out of the feed at the end: its final book is not judged,
    # but a recording that ends without a declared gap is named
    partial = compare_recording(tmp_path / "rec", tmp_path / "sent.bin", SYMBOLS[:2], final,
                                final_symbols=[SYMBOLS[0]])
    assert partial["final_books_equal"] == 1
    assert partial["problems"] == ["ETH/USDT: left the feed but its recording ends without a declared gap"]
