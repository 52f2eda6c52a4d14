"""The recorder thread: the live feed's events written to a recording without delaying the network loop.

A full disk (ENOSPC, or a quota: EDQUOT) pauses recording instead of stopping it: one log line, ``problem``
says why (the feed folds it into every pair's health: a warning, or unhealthy with ``recording.required``),
events are dropped and counted per stream while paused, and every ``flush_interval_s`` the writer tries to
write what it holds. Once that works, recording resumes by itself: first a ``FeedGap`` per stream that lost
events (reason ``recording paused: disk full``, at the first lost event's receive time), so the recording
declares the hole, then the events again. No file is ever left damaged: the writer only renames complete,
fsynced temp files into place, and a failed write leaves the published file as it was and the rows in memory.

Retention (``recording.retention_days``/``max_gb``, retention.py) runs on this thread when recording starts and
every ``RETENTION_EVERY_S``, also while paused (deleting old days may be what frees the space); it never
deletes a day the writer still has a segment open in.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import describe
from helios_orderflow.core.events import BookDelta, BookSnapshot, Event, FeedGap
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.recording.checkpoints import write_checkpoint
from helios_orderflow.recording.retention import apply_retention
from helios_orderflow.recording.store import RemotePath
from helios_orderflow.recording.writer import RecordingWriter

log = logging.getLogger(__name__)

#: errno values that mean "no room": recording pauses and resumes by itself (any other error stops it).
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: The reason of the gaps a pause leaves in the recording.
PAUSE_GAP_REASON = "recording paused: disk full"
#: ... when an object store (s3://, store.py) could not be written.
STORE_PAUSE_GAP_REASON = "recording paused: store unreachable"


def is_store_error(exc: BaseException) -> bool:
    """``exc`` (or what caused it) is an I/O error: on an object store, a network or service error, which may
    pass (Helios's store errors are HeliosErrors caused by pyarrow's OSError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_disk_full(exc: BaseException) -> bool:
    """``exc`` (or what caused it) is a full disk or quota (pyarrow may wrap the OSError or only keep its text)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL:
            return True
        text = str(seen)
        if "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass(frozen=True, slots=True)
class _CheckpointRequest:
    exchange: str
    symbol: str
    blob: bytes
    fingerprint: str
    clock_us: int


class Recorder:
    """The recorder on its own thread: events arrive through a queue, in the feed's order.

    Parquet writes (every ``flush_interval_s``) take tens of milliseconds; on the feed's loop they would
    delay every pair. ``events_written``/``bytes_written`` mirror the writer's counters. ``dropped``: events
    not recorded (while paused, or after an error stopped recording); ``pauses``: disk-full pauses so far;
    ``retention_runs``: retention passes done (not counting those a compaction's lock put off). ``clock``:
    monotonic seconds (retry and retention timing).
    """

    _STOP = object()
    POLL_S = 0.1
    #: Retention runs when recording starts and then at most this often (it walks the recording's folders).
    RETENTION_EVERY_S = 300.0
    #: ... and this soon after a pass that found a compaction at work on the recording.
    RETENTION_BUSY_RETRY_S = 5.0

    def __init__(self, root: str | Path | RemotePath, settings: HeliosSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings.recording
        self.required = settings.recording.required
        self.clock = clock
        self.writer = RecordingWriter(root, settings.recording, flush_by_time=True, clock=clock)
        #: On an object store an I/O error pauses recording like a full disk (the store or the network may come
        #: back) instead of stopping it.
        self._remote = isinstance(self.writer.root, RemotePath)
        self._gap_reason = PAUSE_GAP_REASON
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.error: str | None = None
        self.paused: str | None = None
        self.dropped = 0
        self.pauses = 0
        self.retention_runs = 0
        self.closed = False
        self._lost: dict[tuple[str, str], list[int]] = {}  # stream -> [first lost receive µs, events lost]
        self._lost_total = 0  # events of the streams whose gap is written, this pause
        #: streams whose pause gap is written and whose book waits for a snapshot (``_write``)
        self._await_snapshot: set[tuple[str, str]] = set()
        self.orphan_deltas = 0  # book deltas not recorded after a pause gap, before the stream's next snapshot
        self._paused_mono = 0.0
        self._retry_at = 0.0
        self._retention_at = clock()  # due at once
        self.thread = threading.Thread(target=self._run, name="helios-recorder", daemon=True)
        self.thread.start()

    @property
    def events_written(self) -> int:
        return self.writer.events_written

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    @property
    def problem(self) -> str | None:
        """Why nothing is being recorded now (paused or stopped), None while recording works (any thread)."""
        error = self.error
        if error is not None:
            return f"recording stopped after an error: {error}"
        return self.paused

    def put(self, event: Event) -> None:
        self.queue.put(event)

    def checkpoint(self, exchange: str, symbol: str, blob: bytes, fp: str, clock_us: int) -> None:
        """Save a pair's engine (``blob``, pickled on the feed thread after every event put so far) beside the
        recording, once every event queued before it is on disk (``recording/checkpoints.py``)."""
        self.queue.put(_CheckpointRequest(exchange, symbol, blob, fp, clock_us))

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
        q = self.queue
        stopping = False
        try:
            while not stopping:
                # Wake a few times a second and write what has queued: waking for every event would make
                # this thread and the feed thread hand the GIL back and forth hundreds of times a second.
                time.sleep(self.POLL_S)
                if self.paused is not None and self.clock() >= self._retry_at:
                    self._try_resume()
                while True:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                    if item is self._STOP:
                        stopping = True
                        break
                    if type(item) is _CheckpointRequest:
                        self._checkpoint(item)
                        continue
                    self._write(item)
                if self.paused is None and self.error is None:
                    self._guard(self.writer.flush_if_due)
                if self.clock() >= self._retention_at:
                    self._retention()
        finally:
            if self.paused is not None:
                self._try_resume()
            try:
                self.writer.close()
            except Exception as exc:
                log.error("recording to %s could not be closed (%s): events of the last %.0f s may be missing",
                          self.writer.root, describe(exc), self.settings.flush_interval_s)

    def _write(self, event: Event) -> None:
        if self.error is not None or self.paused is not None:
            self._drop(event)
            return
        if self._await_snapshot:
            # After a pause gap a stream's book deltas continue no book until its next snapshot (the feed sends
            # one after the resume): they are not recorded (a replay would ignore them), and counted.
            key = (event.exchange, event.symbol)
            if key in self._await_snapshot:
                if type(event) is BookSnapshot:
                    self._await_snapshot.discard(key)
                elif type(event) is BookDelta:
                    self.dropped += 1
                    self.orphan_deltas += 1
                    return
        before = self.writer.events_written
        try:
            self.writer.write(event)
        except Exception as exc:
            self._failed(exc)
            if self.writer.events_written == before:  # not taken: a flush or segment close before it failed
                self._drop(event)  # after the pause it caused, so the pause's gap counts it (and starts at it)

    def _checkpoint(self, req: _CheckpointRequest) -> None:
        """Flush, then write the checkpoint at the position of the last event written. Not while anything was
        dropped in this run: the engine saw events the recording lacks, and a restart from it would differ from
        a replay of the recording (the pair then starts fresh after a restart, as without checkpoints)."""
        writer = self.writer
        if self.error is not None or self.paused is not None or self.dropped:
            return
        try:
            writer.flush()
            run, lts = writer.run_id, writer.last_local_ts_us
            if run is None or lts is None:
                return  # nothing recorded yet: nothing to continue from
            write_checkpoint(writer.root, req.exchange, req.symbol, (lts, run, writer.events_written - 1),
                             req.clock_us, req.fingerprint, req.blob)
        except Exception as exc:  # a missed checkpoint only makes the next restart replay more
            if self._pausing(exc):
                self._failed(exc)
            else:
                log.warning("checkpoint of %s %s not written: %s", req.exchange, req.symbol, describe(exc))

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            self._failed(exc)

    def _pausing(self, exc: BaseException) -> bool:
        """A full disk, or on an object store any I/O error: pause and retry rather than stop."""
        return is_disk_full(exc) or (self._remote and is_store_error(exc))

    def _failed(self, exc: Exception) -> None:
        if self._pausing(exc):
            if self.paused is None:
                self._pause(exc)
            return
        if self.error is None:  # anything else stops recording for good; say it once (the feed goes on)
            self.error = describe(exc)
            log.error("recording to %s failed, recording stops (the feed goes on): %s", self.writer.root,
                      self.error)

    def _pause(self, exc: Exception) -> None:
        now = self.clock()
        self.pauses += 1
        self._paused_mono = now
        self._retry_at = now + self.settings.flush_interval_s
        since = datetime.now(UTC).strftime("%H:%M:%S")
        if is_disk_full(exc):
            self._gap_reason = PAUSE_GAP_REASON
            self.paused = (f"recording paused: no space left on the disk of {self.writer.root} (since {since} UTC); "
                           "it resumes by itself when space is freed")
        else:
            self._gap_reason = STORE_PAUSE_GAP_REASON
            self.paused = (f"recording paused: the store {self.writer.root} cannot be written (since {since} UTC: "
                           f"{describe(exc)}); it resumes by itself when the store answers again")
        trading = ("pairs are unhealthy until then (recording.required)" if self.required
                   else "the feed and trading go on")
        full = is_disk_full(exc)
        log.warning("recording to %s paused: %s (%s); %s, events are counted and dropped until %s, then recording "
                    "resumes with the hole declared as a gap", self.writer.root,
                    "disk full" if full else "store unreachable", describe(exc), trading,
                    "space returns" if full else "the store answers")

    def _drop(self, event: Event) -> None:
        self.dropped += 1
        if self.paused is not None:
            lost = self._lost.get((event.exchange, event.symbol))
            if lost is None:
                self._lost[(event.exchange, event.symbol)] = [event.local_ts_us, 1]
            else:
                lost[1] += 1

    def _try_resume(self) -> None:
        """Write what the writer holds; if the disk takes it, declare the hole and record again."""
        now = self.clock()
        self._retry_at = now + self.settings.flush_interval_s
        try:
            self.writer.flush()
            # Gaps in receive order (the writer requires it): each at its stream's first lost event (never
            # before what is written already: an earlier attempt may have written some of them).
            for key, (first_us, n) in sorted(self._lost.items(), key=lambda kv: kv[1][0]):
                at = max(first_us, self.writer.last_local_ts_us or first_us)
                before = self.writer.events_written
                try:
                    self.writer.write(FeedGap(key[0], key[1], at, at,
                                              f"{self._gap_reason} ({n} events not recorded)"))
                finally:
                    if self.writer.events_written > before:
                        self._lost_total += n
                        del self._lost[key]
                        self._await_snapshot.add(key)
            self.writer.flush()
        except Exception as exc:
            if not self._pausing(exc):
                self.paused = None
                self._failed(exc)
            return
        lost, self._lost_total = self._lost_total, 0
        self.paused = None
        log.warning("recording to %s resumed after %.0f s paused: %d events not recorded, declared as gaps",
                    self.writer.root, now - self._paused_mono, lost)

    def _retention(self) -> None:
        self._retention_at = self.clock() + self.RETENTION_EVERY_S
        s = self.settings
        if not s.retention_days and not s.max_gb:
            return
        try:
            result = apply_retention(self.writer.root, retention_days=s.retention_days, max_gb=s.max_gb,
                                     protect_days=self.writer.open_days())
        except Exception as exc:  # never stops recording; the next pass tries again
            log.error("recording %s: retention failed (%s); retried in %.0f s", self.writer.root, describe(exc),
                      self.RETENTION_EVERY_S)
            return
        if result.busy:  # a compaction holds the recording: try again soon
            self._retention_at = self.clock() + self.RETENTION_BUSY_RETRY_S
            return
        self.retention_runs += 1
