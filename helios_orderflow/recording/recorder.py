"""The recorder thread: the live feed's events written to a recording without delaying the network loop."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import describe
from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.recording.writer import RecordingWriter

log = logging.getLogger(__name__)


class Recorder:
    """The recorder on its own thread: events arrive through a queue, in the feed's order.

    Parquet writes (every ``flush_interval_s``) take tens of milliseconds; on the feed's loop they would
    delay every pair. ``events_written``/``bytes_written`` mirror the writer's counters.
    """

    _STOP = object()
    POLL_S = 0.1

    def __init__(self, root: Path, settings: HeliosSettings) -> None:
        self.writer = RecordingWriter(root, settings.recording, flush_by_time=True)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: str | None = None
        self.dropped = 0
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="helios-recorder", daemon=True)
        self.thread.start()

    @property
    def events_written(self) -> int:
        return self.writer.events_written

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    def put(self, event: Event) -> None:
        self.queue.put(event)

    def close(self, timeout_s: float) -> None:
        """Write what is queued, close the recording; wait at most ``timeout_s``. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.queue.put(self._STOP)
        self.thread.join(max(0.0, timeout_s))
        if self.thread.is_alive():
            log.warning("recorder did not finish writing within %.1f s; the last events may be lost", timeout_s)

    def _run(self) -> None:
        writer = self.writer
        q = self.queue
        stopping = False
        try:
            while not stopping:
                # Wake a few times a second and write what has queued: waking for every event would make
                # this thread and the feed thread hand the GIL back and forth hundreds of times a second.
                time.sleep(self.POLL_S)
                while True:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is self._STOP:
                        stopping = True
                        break
                    if self.error is None:
                        self._guard(writer.write, item)
                    else:
                        self.dropped += 1
                self._guard(writer.flush_if_due)
        finally:
            self._guard(writer.close)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # a full disk must not take the feed down; say it once
            if self.error is None:
                self.error = describe(exc)
                log.error("recording to %s failed, recording stops (the feed goes on): %s", self.writer.root,
                          self.error)
            self.dropped += 1
