"""How long this test process was held up by the machine: the measure that lets a time bound scale with the
machine's speed where the bound is the point (issue 18: "deadlines that scale with measured machine speed").

A daemon thread sleeps ``PERIOD_S`` in a loop and records how late it woke. A thread of this process that wants
to run and cannot (the CPU taken by other processes, or the GIL by this process's other threads) wakes late by
the same amount, so the lateness summed over a window is the time the code under test lost in it. On an idle
machine it stays near zero, and a bound of ``2 s + stalled(window)`` is the bound of 2 s.

The thread runs only while someone measures (``measuring()``); the samples stay for the windows asked later.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator

PERIOD_S = 0.01
#: Lateness below this is the sleep's own jitter, not a stall.
SLACK_S = 0.002


class StallMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._thread: threading.Thread | None = None
        #: (wall time it woke, seconds late), for the lateness above SLACK_S
        self._late: deque[tuple[float, float]] = deque(maxlen=1_000_000)

    @contextlib.contextmanager
    def measuring(self) -> Iterator[StallMeter]:
        with self._lock:
            self._users += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stall-meter", daemon=True)
                self._thread.start()
        try:
            yield self
        finally:
            with self._lock:
                self._users -= 1

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._users == 0:
                    self._thread = None
                    return
            t0 = time.monotonic()
            time.sleep(PERIOD_S)
            late = time.monotonic() - t0 - PERIOD_S
            if late > SLACK_S:
                self._late.append((time.time(), late))

    def stalled_s(self, start: float, end: float) -> float:
        """Seconds lost between the wall times ``start`` and ``end`` (a stall that began before ``start`` counts
        from ``start``)."""
        total = 0.0
        for woke, late in list(self._late):
            if start < woke <= end + PERIOD_S:
                total += min(late, woke - start)
        return total


METER = StallMeter()
