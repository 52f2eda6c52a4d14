"""``make demo``: the main job, on bundled data, with no keys and no network.

Stage 1 (this module, until the strategy and the local-exchange demo land): import the bundled real
Binance BTCUSDT capture into a Helios recording under ``user_data/orderflow/demo``, inspect it, and say
what was checked.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from .commands.inspect import format_report
from .errors import HeliosError
from .importers.binance_raw import iter_events
from .inspect import inspect_events
from .samples import BINANCE_BTCUSDT_FILES
from .settings import RecordingSettings

DEMO_DIR = Path("user_data") / "orderflow" / "demo"


def main() -> int:
    from .recording.reader import read_events
    from .recording.writer import RecordingWriter

    print("Helios demo (stage 1): the Freqtrade strategy and the live local-exchange demo are not built yet;")
    print("this run imports the bundled real Binance BTCUSDT capture (11 minutes of L2 diffs, trades and")
    print("best bid/offer, MIT licence, see helios_orderflow/data/samples) and inspects the recording.\n")
    if DEMO_DIR.exists():
        shutil.rmtree(DEMO_DIR)
    t0 = time.monotonic()
    with RecordingWriter(DEMO_DIR, RecordingSettings(), flush_by_time=False) as writer:
        for ev in iter_events(BINANCE_BTCUSDT_FILES, progress=None):
            writer.write(ev)
        n = writer.events_written
    print(f"imported {n} events into {DEMO_DIR} in {time.monotonic() - t0:.1f}s")
    reports = inspect_events(read_events(DEMO_DIR))
    for report in reports.values():
        print(format_report(report))
    print(f"\nNext: `helios inspect {DEMO_DIR} --json`, or read the recording with DuckDB/Polars (README).")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HeliosError as exc:
        print(f"make demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
