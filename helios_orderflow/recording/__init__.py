"""Helios recordings: a hive-partitioned Parquet dataset of events (format in schema.py and
docs/recording.md), written crash-safe by RecordingWriter and streamed back in order by read_events; ``audit``
checks a stream of events against the venue's own sequence numbers and trade ids.

May import: core, book.
"""

from helios_orderflow.recording.reader import (
    RecordingIndex,
    content_key,
    index_recording,
    list_streams,
    read_events,
    stream_span,
)
from helios_orderflow.recording.schema import FORMAT_VERSION
from helios_orderflow.recording.writer import RecordingWriter

__all__ = [
    "FORMAT_VERSION", "RecordingIndex", "RecordingWriter", "content_key", "index_recording", "list_streams",
    "read_events", "stream_span",
]
