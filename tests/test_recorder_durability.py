"""Recorder durability at 24 random SIGKILL points (issue 9), on top of the 5 of test_recorder_kill.py.

Each point runs the same real scenario as tests/test_recorder_kill.py (a child process records the real
Binance BTCUSDT stream with a real RecordingWriter flushing every 20 ms and is killed with SIGKILL once it
has written a random number of events) and checks the same things: every Parquet file is complete and
readable, what is read back is an exact prefix of what was written, nothing older than one flush interval
(of the writer's own clock readings) is lost, and a restarted writer adds new files without touching any
old one (bytes and mtimes) after which the whole stream reads back.

The points here draw their kill targets from seeds 1005..1028 (after test_recorder_kill.py's own
1000..1004), so the two files together kill the recorder at 29 distinct random points.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import test_recorder_kill as kill
from test_recorder_kill import pickled_events  # noqa: F401  (the module-scoped fixture, reused)

from helios_orderflow.core.events import Event

#: Kill points of this file, after test_recorder_kill.py's own 0..HELIOS_KILL_POINTS-1 (distinct seeds).
_FIRST = max(5, kill.KILL_POINTS)
POINTS = range(_FIRST, _FIRST + 24)


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_a_random_point_loses_at_most_one_flush_interval_and_restart_appends(
    point: int, pickled_events: tuple[Path, tuple[Event, ...]], tmp_path: Path  # noqa: F811
) -> None:
    kill.test_sigkill_mid_write_leaves_a_readable_prefix_and_restart_appends(point, pickled_events, tmp_path)

