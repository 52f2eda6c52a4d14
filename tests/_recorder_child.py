"""Child process of tests/test_recorder_kill.py: records pickled events with a real RecordingWriter until
it is killed (SIGKILL) or done.

Usage: python _recorder_child.py EVENTS.pickle ROOT PROGRESS FLUSH_INTERVAL_S SEGMENT_S

PROGRESS is a file of 8-byte doubles, shared with the parent through a MAP_SHARED mmap (it survives a
SIGKILL): slot 0 = number of ``write`` calls that have returned; slot 1 + k = the clock reading the writer
took in ``write`` of event k. The parent uses these to check the loss bound exactly, with no timing.
"""

from __future__ import annotations

import mmap
import pickle
import sys
import time
from pathlib import Path

from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.recording import RecordingWriter


def main() -> int:
    events_path, root, progress_path, flush_s, segment_s = sys.argv[1:6]
    events = pickle.loads(Path(events_path).read_bytes())
    with open(progress_path, "r+b") as fh:
        mm = mmap.mmap(fh.fileno(), 8 * (len(events) + 1))
    view = memoryview(mm).cast("d")
    index = 0

    def clock() -> float:
        t = time.monotonic()
        view[1 + index] = t
        return t

    settings = RecordingSettings(flush_interval_s=float(flush_s), segment_s=float(segment_s))
    writer = RecordingWriter(root, settings, flush_by_time=True, clock=clock)
    print("ready", flush=True)
    for i, event in enumerate(events):
        index = i
        writer.write(event)
        view[0] = i + 1
    writer.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
