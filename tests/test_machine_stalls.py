"""The stall meter that lets the fault tests' resync bound scale with the machine (tests/machine_stalls.py)."""

from __future__ import annotations

import sys
import time

from tests.machine_stalls import PERIOD_S, StallMeter


def _hold_the_gil(seconds: float) -> None:
    """Busy this thread for ``seconds`` without letting another Python thread run (as a loaded machine or a busy
    thread of the same process holds up the code under test)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds * 10)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    finally:
        sys.setswitchinterval(previous)


def test_a_held_up_process_counts_the_time_it_lost_inside_the_window_only() -> None:
    meter = StallMeter()
    with meter.measuring():
        time.sleep(5 * PERIOD_S)  # the meter's thread is running
        before = time.time()
        _hold_the_gil(0.3)
        time.sleep(5 * PERIOD_S)  # the meter wakes, late, and records it
        after = time.time()
    assert meter.stalled_s(before, after) >= 0.25
    # a window that ends before the stall began does not count it
    assert meter.stalled_s(before - 10.0, before - 1.0) == 0.0
    # a window that starts halfway through the stall counts from its start only
    assert meter.stalled_s(before + 0.2, after) <= meter.stalled_s(before, after) - 0.15


def test_the_meters_thread_stops_when_nobody_measures() -> None:
    meter = StallMeter()
    with meter.measuring():
        time.sleep(2 * PERIOD_S)
        thread = meter._thread
        assert thread is not None and thread.is_alive()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
