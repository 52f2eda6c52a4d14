"""A recorder killed with SIGKILL mid-write leaves a readable recording (issue 2 acceptance).

A child process (tests/_recorder_child.py) records the real Binance BTCUSDT stream with a real
RecordingWriter flushing every 20 ms of wall-clock time; the parent kills it with SIGKILL once it has
written a random number of events, then checks:

- every Parquet file on disk is complete (pyarrow reads it) and ``read_events`` reads the recording;
- what it reads is exactly the first R written events (a prefix: seq contiguous from 0, nothing torn);
- the loss is at most one flush interval: every event whose ``write`` took a clock reading at least
  ``flush_interval_s`` before the clock reading of the last ``write`` that returned is there. The child
  logs its clock readings through a shared mmap, so this is checked exactly, with no timing assumption;
- a restarted writer adds new files without touching any old one, and the whole stream then reads back.

``HELIOS_KILL_POINTS`` sets the number of random kill points (default 5; issue 9 runs 20+).
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_recording import btcusdt_events, parquet_files

from helios_orderflow.core.events import Event
from helios_orderflow.recording import RecordingWriter, read_events

KILL_POINTS = int(os.environ.get("HELIOS_KILL_POINTS", "5"))
FLUSH_INTERVAL_S = 0.02
SEGMENT_S = 20.0
CHILD = Path(__file__).with_name("_recorder_child.py")


@pytest.fixture(scope="module")
def pickled_events(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[Event, ...]]:
    events = btcusdt_events()
    path = tmp_path_factory.mktemp("kill") / "events.pickle"
    path.write_bytes(pickle.dumps(list(events)))
    return path, events


def _read_progress(path: Path, n_events: int) -> tuple[int, list[float]]:
    import array

    values = array.array("d")
    values.frombytes(path.read_bytes()[: 8 * (n_events + 1)])
    return int(values[0]), list(values[1:])


@pytest.mark.slow
@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_sigkill_mid_write_leaves_a_readable_prefix_and_restart_appends(
    point: int, pickled_events: tuple[Path, tuple[Event, ...]], tmp_path: Path
) -> None:
    events_path, events = pickled_events
    n = len(events)
    rng = random.Random(1000 + point)
    target = rng.randrange(1, n - 1)  # kill once this many events were written
    root = tmp_path / "rec"
    progress = tmp_path / "progress"
    progress.write_bytes(b"\0" * 8 * (n + 1))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(events_path), str(root), str(progress), str(FLUSH_INTERVAL_S),
         str(SEGMENT_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        deadline = time.monotonic() + 120
        fd = os.open(progress, os.O_RDONLY)
        try:
            while True:
                (done,) = struct.unpack("d", os.pread(fd, 8, 0))  # unbuffered: sees the child's mmap writes
                if done >= target or child.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.0005)
        finally:
            os.close(fd)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL, f"child ended on its own: {child.stderr.read() if child.stderr else ''}"
    returned, clocks = _read_progress(progress, n)
    assert 0 < returned < n

    # Every file is a complete Parquet file.
    files = parquet_files(root)
    for path in files:
        pq.read_table(path)

    # What is read back is exactly a prefix of what was written.
    back = list(read_events(root))
    r = len(back)
    assert back == list(events[:r])
    assert r <= returned + 1  # at most the event whose write was under way

    # Loss at most one flush interval (of the writer's own clock readings).
    last_clock = clocks[returned - 1]
    must_have = sum(1 for c in clocks[:returned] if c <= last_clock - FLUSH_INTERVAL_S)
    assert r >= must_have, f"lost events older than the flush interval: read {r}, needed {must_have}"

    # A restart appends new files and never touches the old ones (bytes and mtimes).
    old = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    with RecordingWriter(root, flush_by_time=False) as writer:
        writer.write_many(events[r:])
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in old} == old
    assert len(parquet_files(root)) > len(files)
    assert list(read_events(root)) == list(events)
