"""``helios compact`` (helios_orderflow/recording/compact.py) on real Parquet recordings of the real Binance BTCUSDT
stream (../shared/data, 99,574 events over 2024-08-08 23:54 to 2024-08-09 00:05 UTC, so two UTC days): the same
events in the same order and the same features after it, one file per table, stream and day, idempotent, safe for a
reader that is part way through, for a killed run's uncommitted tail, for an interrupted compaction, and beside a
live writer in another process that writes the same day meanwhile."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from _btcusdt import events as btcusdt_events

from helios_orderflow.cli.main import main as helios_main
from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.features.compute import compute_features
from helios_orderflow.recording import RecordingWriter, index_recording, read_events
from helios_orderflow.recording.compact import compact_recording
from helios_orderflow.recording.schema import META_PARTS

CHILD = Path(__file__).resolve().parent / "_compact_writer_child.py"


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def files_per_partition(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in parquet_files(root):
        key = p.parent.relative_to(root).as_posix()
        out[key] = out.get(key, 0) + 1
    return out


def record(root: Path, events: tuple[Event, ...], segment_s: float = 20.0) -> None:
    with RecordingWriter(root, RecordingSettings(segment_s=segment_s), flush_by_time=False) as writer:
        writer.write_many(events)


@pytest.fixture(scope="module")
def events() -> tuple[Event, ...]:
    return btcusdt_events()


def test_compact_merges_each_days_segments_into_one_file_per_stream_with_the_same_events_and_features(
        events: tuple[Event, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "rec"
    record(root, events)
    before = files_per_partition(root)
    assert len(before) == 6 and sum(before.values()) == 102  # 3 tables x 2 days, a segment per 20 s
    features_before = compute_features(root, "BTC/USDT", "1m", cache=False)

    assert helios_main(["compact", str(root)]) == 0
    assert "102 files merged into 6" in capsys.readouterr().out

    assert files_per_partition(root) == dict.fromkeys(before, 1)
    assert list(read_events(root)) == list(events)
    pd.testing.assert_frame_equal(compute_features(root, "BTC/USDT", "1m", cache=False), features_before)
    for path in parquet_files(root):  # each merged file says which segments it holds, its own name first
        parts = json.loads(pq.read_metadata(path).metadata[META_PARTS])
        assert parts[0] == path.name and parts == sorted(parts)


def test_compacting_again_changes_nothing(events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(root, events)
    compact_recording(root)
    state = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in parquet_files(root)}
    stats = compact_recording(root)
    assert (stats.merged_files, stats.parts_merged, stats.leftovers_removed) == (0, 0, 0)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in parquet_files(root)} == state


def test_a_reader_part_way_through_when_compaction_runs_returns_every_event_once(
        events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(root, events)
    # Listed before: it has opened the first files (old segments); the rest of its listing is then gone.
    reader = read_events(index_recording(root), chunk_rows=1000)
    head = [next(reader) for _ in range(30_000)]
    # Listed before, not started: every file it listed but the merged ones' first parts is gone.
    unstarted = read_events(index_recording(root))
    stats = compact_recording(root)
    assert stats.parts_merged == 102
    assert head + list(reader) == list(events)
    assert list(unstarted) == list(events)


def test_a_killed_runs_uncommitted_rows_stay_unread_after_compaction(events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    writer = RecordingWriter(root, RecordingSettings(segment_s=20), flush_by_time=False)
    writer.write_many(events[:60_000])
    writer.flush()
    run_file = root / "_runs" / f"{writer.run_id}.json"
    commit = run_file.read_bytes()
    writer.write_many(events[60_000:70_000])
    writer.flush()
    run_file.write_bytes(commit)  # the disk of a kill between the segment renames and the commit record
    assert json.loads(commit)["committed_seq"] == 59_999
    before = list(read_events(root))
    assert before == list(events[:60_000])

    stats = compact_recording(root)
    assert stats.merged_files >= 3
    assert list(read_events(root)) == before
    # The newest file of each table (the killed run could still be alive for all compaction knows) is left as is.
    assert all(n <= 2 for n in files_per_partition(root).values())


def test_the_leftovers_of_an_interrupted_compaction_are_never_read_twice_and_are_removed_next_time(
        events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(root, events)
    saved = tmp_path / "saved"
    shutil.copytree(root, saved)
    compact_recording(root)
    # Put the parts back beside the merged files: the disk of a compaction killed after its rename.
    restored = 0
    for path in parquet_files(saved):
        target = root / path.relative_to(saved)
        if not target.exists():
            shutil.copy2(path, target)
            restored += 1
    assert restored == 102 - 6
    assert list(read_events(root)) == list(events)
    stats = compact_recording(root)
    assert (stats.leftovers_removed, stats.merged_files) == (96, 0)
    assert sum(files_per_partition(root).values()) == 6
    assert list(read_events(root)) == list(events)


def test_compact_leaves_a_live_writers_open_segment_alone(events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    writer = RecordingWriter(root, RecordingSettings(segment_s=20), flush_by_time=False)
    writer.write_many(events[:50_000])
    writer.flush()
    compact_recording(root)
    assert list(read_events(root)) == list(events[:50_000])
    writer.write_many(events[50_000:])  # rewrites its open segments, closes them, starts new ones
    writer.close()
    assert list(read_events(root)) == list(events)
    compact_recording(root)
    assert list(read_events(root)) == list(events)
    assert files_per_partition(root) == dict.fromkeys(files_per_partition(root), 1)


def test_compact_beside_a_live_writer_process_on_the_same_day_loses_and_duplicates_nothing(
        events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    events_path = tmp_path / "events.pickle"
    events_path.write_bytes(pickle.dumps(events))
    chunks = 6
    size = -(-len(events) // chunks)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, str(CHILD), str(events_path), str(root), str(chunks), "10"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    merged_while_writing = 0
    try:
        assert child.stdout is not None and child.stdin is not None
        for k in range(chunks):
            line = child.stdout.readline().strip()
            assert line == str(k), child.stderr.read() if child.stderr else ""
            # The child writes chunk k + 1 meanwhile: compaction and this read run beside a live writer.
            merged_while_writing += compact_recording(root).parts_merged
            back = list(read_events(root))
            assert back == list(events[:len(back)]) and len(back) >= min(len(events), (k + 1) * size)
            try:
                child.stdin.write("next\n")
                child.stdin.flush()
            except BrokenPipeError:
                pass
        assert child.stdout.readline().strip() == "done"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == 0
    assert merged_while_writing > 20
    assert list(read_events(root)) == list(events)
    compact_recording(root)
    assert list(read_events(root)) == list(events)
    assert set(files_per_partition(root).values()) == {1}
    pd.testing.assert_frame_equal(compute_features(root, "BTC/USDT", "1m", cache=False),
                                  compute_features(list(events), "BTC/USDT", "1m", exchange="binance", cache=False))


@pytest.mark.integration
def test_compact_and_retention_beside_the_live_recorder_lose_and_duplicate_no_trade(tmp_path: Path) -> None:
    """The live feed's Recorder (1 s segments) records two pairs from the local exchange while this thread
    compacts and reads the same recording over and over; retention (2 days) runs in the recorder at start."""
    from feed_fault_harness import wait_for

    from helios_orderflow.core.events import Trade
    from helios_orderflow.core.settings import HeliosSettings
    from helios_orderflow.emulator import SyntheticSource, start_in_thread
    from helios_orderflow.live.feed import Feed
    from helios_orderflow.recording.retention import day_folders
    from helios_orderflow.recording.schema import US_PER_DAY, date_of_day

    pairs = ["BTC/USDT", "ETH/USDT"]
    root = tmp_path / "rec"
    today = time.time_ns() // 1000 // US_PER_DAY
    with RecordingWriter(root, flush_by_time=False) as old:  # two old days of another pair
        for day in (today - 4, today - 3):
            t = day * US_PER_DAY
            old.write(Trade("binance", "OLD/USDT", t, t, 1.0, 1.0, "buy", str(day)))
    settings = HeliosSettings.from_dict({"recording": {"segment_s": 1.0, "flush_interval_s": 0.2,
                                                       "retention_days": 2}})
    exchange = start_in_thread(SyntheticSource(pairs, seed=3), record=True)
    merged = rounds = 0
    try:
        feed = Feed("binance", pairs, settings, ccxt_config=exchange.ccxt_config(), record_to=root, engine=False)
        feed.start()
        try:
            wait_for(lambda: all(feed.state.is_healthy(s) for s in pairs), 60, "both pairs healthy")
            deadline = time.monotonic() + 120
            while (merged < 40 or rounds < 5) and time.monotonic() < deadline:
                merged += compact_recording(root).parts_merged
                rounds += 1
                ids = [(e.symbol, e.trade_id) for e in read_events(root) if isinstance(e, Trade)]
                assert len(ids) == len(set(ids)), "a trade read twice beside the live writer"
        finally:
            feed.stop()
            assert feed.wait_recording(60)
        server_ids = {s: exchange.trade_ids(s) for s in pairs}
    finally:
        exchange.stop()
    assert merged >= 40, f"only {merged} files merged in {rounds} rounds beside the live writer"
    assert feed.recorder is not None and feed.recorder.retention_runs >= 1
    assert min(day_folders(root)) >= date_of_day(today - 1)  # the two old days went at start
    compact_recording(root)
    events = list(read_events(root))
    for s in pairs:
        trades = [int(e.trade_id) for e in events if isinstance(e, Trade) and e.symbol == s]
        first = server_ids[s].index(trades[0])
        assert len(trades) > 50 and trades == server_ids[s][first:first + len(trades)]  # none lost, none twice


def test_compact_date_and_symbol_restrict_it_to_that_day_and_stream(events: tuple[Event, ...], tmp_path: Path) -> None:
    root = tmp_path / "rec"
    record(root, events)
    before = files_per_partition(root)
    assert compact_recording(root, symbol="ETH/USDT").merged_files == 0  # a stream it does not have
    stats = compact_recording(root, exchange="binance", symbol="BTC/USDT", date="2024-08-08")
    after = files_per_partition(root)
    assert stats.merged_files == 3
    assert {k: v for k, v in after.items() if "date=2024-08-09" in k} == {
        k: v for k, v in before.items() if "date=2024-08-09" in k}
    assert {v for k, v in after.items() if "date=2024-08-08" in k} == {1}
    assert list(read_events(root)) == list(events)
