"""Child process of tests/test_compact.py: a live writer (real RecordingWriter, flushing by time) recording
pickled events in chunks while the parent compacts and reads the same recording.

Usage: python _compact_writer_child.py EVENTS.pickle ROOT CHUNKS SEGMENT_S

After chunk k it prints ``k``; before chunk k + 2 it waits for a line on stdin (the parent's "compaction k
done"), so every compaction runs while the next chunk is being written. Prints ``done`` after close().
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.recording import RecordingWriter


def main() -> int:
    events_path, root, chunks, segment_s = sys.argv[1:5]
    events = pickle.loads(Path(events_path).read_bytes())
    n = int(chunks)
    size = -(-len(events) // n)
    writer = RecordingWriter(root, RecordingSettings(flush_interval_s=0.02, segment_s=float(segment_s)))
    for k in range(n):
        if k >= 2:
            sys.stdin.readline()  # the parent has compacted after chunk k - 2
        writer.write_many(events[k * size:(k + 1) * size])
        writer.flush()
        print(k, flush=True)
    writer.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
