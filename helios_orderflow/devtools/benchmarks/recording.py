"""Disk cost of a recording, scaled to one pair-day at Binance BTCUSDT's rate (docs/recording.md, "Disk").

The bundled Binance spot BTCUSDT capture (10.8 min: depth@100ms diffs, bookTicker, trades, one snapshot) is
imported as ``helios import`` does (default settings: 60 s segments), its Parquet bytes are divided by its
span of receive time and scaled to 24 h; then ``helios compact`` merges it and the same is measured again.

- ``recording_gb_per_pair_day``: as written live (one file per 60 s segment, table and stream);
- ``recording_gb_per_pair_day_compacted``: after ``helios compact`` (one file per day, table and stream);
- ``compact_rows_per_s``: rows merged per second by ``compact_recording``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

DAY_S = 86_400


def _bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet") if not p.name.startswith("."))


def run(quick: bool = False) -> dict[str, Any]:
    from helios_orderflow.core.settings import RecordingSettings
    from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
    from helios_orderflow.importers.binance_raw import iter_events
    from helios_orderflow.recording.compact import compact_recording
    from helios_orderflow.recording.writer import RecordingWriter

    tmp = Path(tempfile.mkdtemp(prefix="helios-bench-recording-"))
    try:
        root = tmp / "rec"
        first = last = None
        with RecordingWriter(root, RecordingSettings(), flush_by_time=False) as writer:
            for ev in iter_events(BINANCE_BTCUSDT_FILES, progress=False):
                first = ev.local_ts_us if first is None else first
                last = ev.local_ts_us
                writer.write(ev)
        assert first is not None and last is not None
        span_s = (last - first) / 1e6
        written = _bytes(root)
        t0 = time.perf_counter()
        stats = compact_recording(root)
        took = time.perf_counter() - t0
        compacted = _bytes(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "recording_gb_per_pair_day": written / span_s * DAY_S / 1e9,
        "recording_gb_per_pair_day_compacted": compacted / span_s * DAY_S / 1e9,
        "compact_rows_per_s": stats.rows / took if took > 0 else float("nan"),
    }
