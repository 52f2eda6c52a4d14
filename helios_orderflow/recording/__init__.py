"""Helios recordings: a hive-partitioned Parquet dataset of events (format in schema.py and
docs/recording.md), written crash-safe by RecordingWriter and streamed back in order by read_events."""

from .reader import content_key, list_streams, read_events, stream_span
from .schema import FORMAT_VERSION
from .writer import RecordingWriter

__all__ = ["FORMAT_VERSION", "RecordingWriter", "content_key", "list_streams", "read_events", "stream_span"]
