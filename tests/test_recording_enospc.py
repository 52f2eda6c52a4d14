"""A full disk pauses recording, never the feed (helios_orderflow/recording/recorder.py): a real Feed (real ccxt.pro
binance client against the local exchange, real engine) records onto a real size-limited tmpfs the test mounts;
a filler file takes the last free byte. Recording pauses with one log line and a health warning, SharedState keeps
publishing and the engine keeps counting events (the pair stays healthy: nothing a trading decision reads
changes), every file on the filesystem stays a readable Parquet file, and once the filler is deleted recording
resumes by itself with the hole declared as a gap. With ``recording.required`` the pair is unhealthy while paused.

Needs ``mount -t tmpfs`` (root in a container that allows it); skipped with the reason otherwise."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from feed_fault_harness import wait_for

from helios_orderflow.core.events import BookDelta, BookSnapshot, FeedGap
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.live.feed import Feed
from helios_orderflow.recording import read_events
from helios_orderflow.recording.recorder import PAUSE_GAP_REASON

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for this test (unmounted after it)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", f"helios-test-{uuid.uuid4().hex[:8]}",
                               str(mnt)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}): run as root where mounts are allowed")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()} (run as root where mounts are allowed)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full (the last pages one by one); returns its size."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 65_536, 4096):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def exchange() -> Iterator[Any]:
    handle = start_in_thread(SyntheticSource(SYMBOLS, seed=5))
    yield handle
    handle.stop()


def run_disk_full_window(exchange: Any, root: Path, required: bool,
                         caplog: pytest.LogCaptureFixture) -> tuple[Feed, dict[str, Any]]:
    settings = HeliosSettings.from_dict({"recording": {"flush_interval_s": 0.2, "segment_s": 5.0,
                                                       "required": required}})
    feed = Feed("binance", SYMBOLS, settings, ccxt_config=exchange.ccxt_config(), record_to=root / "rec",
                timeframe="1m")
    seen: dict[str, Any] = {}
    sym = SYMBOLS[0]
    with caplog.at_level(logging.WARNING, logger="helios_orderflow.recording.recorder"):
        feed.start()
        try:
            wait_for(lambda: all(feed.state.is_healthy(s) for s in SYMBOLS), 60, "all pairs healthy")
            recorder = feed.recorder
            assert recorder is not None
            wait_for(lambda: recorder.events_written > 500, 60, "the recording to start")
            filler = root / "filler"
            seen["filler_bytes"] = fill(filler)
            wait_for(lambda: recorder.paused is not None, 60, "recording to pause on the full disk")
            # Paused: the feed goes on (new publications, the engine keeps counting events).
            snap = feed.state.get(sym)
            assert snap is not None and snap.engine is not None
            seq0, engine_events0 = snap.seq, snap.engine.events
            dropped0 = recorder.dropped
            wait_for(lambda: feed.state.get(sym).engine.events > engine_events0 + 200  # type: ignore[union-attr]
                     and recorder.dropped > dropped0 + 200, 60, "the engine to go on while recording is paused")
            paused = feed.state.get(sym)
            assert paused is not None and paused.seq > seq0
            seen["healthy"] = feed.state.is_healthy(sym)
            seen["problems"] = feed.state.problems(sym)
            seen["warnings"] = feed.state.warnings(sym)
            seen["tmp_files_while_full"] = sorted(p.name for p in (root / "rec").rglob(".*"))
            seen["unreadable_while_full"] = unreadable(root / "rec")
            written_paused = recorder.events_written
            filler.unlink()
            wait_for(lambda: recorder.paused is None, 60, "recording to resume once space is back")
            wait_for(lambda: recorder.events_written > written_paused + 200, 60, "events to be recorded again")
            # The resume is a gap to the engine too: healthy again at its next book snapshot.
            wait_for(lambda: feed.state.is_healthy(sym), 60, "the pair healthy again after the resume")
            seen["healthy_after"] = True
            seen["warnings_after"] = feed.state.warnings(sym)
        finally:
            feed.stop()
            assert feed.wait_recording(60)
    seen["log"] = [r.getMessage() for r in caplog.records if r.name == "helios_orderflow.recording.recorder"]
    return feed, seen


def unreadable(root: Path) -> list[str]:
    bad = []
    for path in root.rglob("*.parquet"):
        if path.name.startswith("."):
            continue
        try:
            pq.read_table(path)
        except Exception as exc:  # pragma: no cover - the assertion names it
            bad.append(f"{path}: {exc}")
    return bad


def test_a_full_disk_pauses_recording_with_a_warning_the_feed_goes_on_and_recording_resumes_with_a_gap(
        exchange: Any, small_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    feed, seen = run_disk_full_window(exchange, small_fs, False, caplog)
    recorder = feed.recorder
    assert recorder is not None and recorder.pauses == 1 and recorder.error is None
    # Healthy with a warning: nothing a trading decision reads (is_healthy, problems) changed.
    assert seen["healthy"] is True and seen["problems"] == ()
    assert len(seen["warnings"]) == 1 and "recording paused: no space left" in seen["warnings"][0]
    assert seen["healthy_after"] is True and seen["warnings_after"] == ()
    # One line when it paused, one when it resumed.
    paused_lines = [m for m in seen["log"] if "paused: disk full" in m]
    assert len(paused_lines) == 1 and "the feed and trading go on" in paused_lines[0]
    assert len([m for m in seen["log"] if "resumed after" in m]) == 1
    # Never a damaged file, nor a temp file left on the full disk.
    assert seen["unreadable_while_full"] == [] and seen["tmp_files_while_full"] == []
    root = small_fs / "rec"
    assert unreadable(root) == []
    events = list(read_events(root))
    gaps = [e for e in events if isinstance(e, FeedGap) and e.reason.startswith(PAUSE_GAP_REASON)]
    assert {g.symbol for g in gaps} == set(SYMBOLS)  # the hole is declared on every stream that lost events
    lost = sum(int(g.reason.split("(")[1].split()[0]) for g in gaps)
    # the gaps count the events lost while paused; the book deltas queued behind a pause gap, which continue no
    # book until the stream's next snapshot, are left out and counted apart
    assert lost == recorder.dropped - recorder.orphan_deltas > 0
    for sym in SYMBOLS:
        waiting = False
        for e in events:
            if e.symbol != sym:
                continue
            if isinstance(e, FeedGap) and e.reason.startswith(PAUSE_GAP_REASON):
                waiting = True
            elif isinstance(e, BookSnapshot):
                waiting = False
            assert not (waiting and isinstance(e, BookDelta)), f"{sym}: a book delta after the pause gap, no snapshot"
    # Recorded events go on after the gap, and each pair's book restarts from a snapshot (the feed declared the
    # resume to its engine too), so a replay's book is whole again.
    last_gap = max(i for i, e in enumerate(events) if e in gaps)
    assert len(events) - last_gap > 200
    for sym in SYMBOLS:
        after = [e for e in events[last_gap:] if e.symbol == sym
                 and (isinstance(e, BookSnapshot | BookDelta) or isinstance(e, FeedGap))]
        resumed = next(i for i, e in enumerate(after)
                       if isinstance(e, FeedGap) and e.reason == "recording resumed after a pause")
        assert isinstance(next(e for e in after[resumed:] if not isinstance(e, FeedGap)), BookSnapshot)


def test_with_recording_required_a_full_disk_makes_the_pair_unhealthy_until_recording_resumes(
        exchange: Any, small_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    feed, seen = run_disk_full_window(exchange, small_fs, True, caplog)
    assert feed.recorder is not None and feed.recorder.pauses == 1
    assert seen["healthy"] is False and seen["warnings"] == ()
    assert len(seen["problems"]) == 1 and "recording.required is true" in seen["problems"][0]
    assert seen["healthy_after"] is True
    assert unreadable(small_fs / "rec") == []
