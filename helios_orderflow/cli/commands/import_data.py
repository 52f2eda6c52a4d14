"""``helios import --format {binance-raw,cryptofeed,freqtrade-trades,tardis} SRC... --out DIR``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.importers import FORMATS, ImportStats, iter_import

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="convert exchange captures (Binance raw, cryptofeed, tardis.dev CSV, Freqtrade's downloaded trades) into "
             "a Helios recording",
        description="Convert third-party market data into a Helios recording (Parquet, see README).",
    )
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="source format")
    p.add_argument("src", nargs="+", type=Path, help="source files, in time order where it matters")
    p.add_argument("--out", required=True, type=Path, help="recording directory (created if missing)")
    p.add_argument("--exchange", default=None, help="ccxt exchange id, where the source does not say")
    p.add_argument("--symbol", default=None, help="unified symbol (BTC/USDT), where the source does not say")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def importer_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"progress": False if args.no_progress else None}
    if args.exchange:
        options["exchange"] = args.exchange
    if args.symbol:
        options["symbol"] = args.symbol
    return options


def import_summary(stats: ImportStats) -> list[str]:
    """The importer's counters as ``helios import`` and ``helios inspect --format`` print them: checksums
    verified (Kraken, OKX, Bitget; a mismatch is a skip with its reason) and each kind of skip with its
    first place."""
    lines: list[str] = []
    if stats.checksums_verified:
        lines.append(f"checksums verified: {stats.checksums_verified}")
    for reason, count in sorted(stats.skipped.items()):
        lines.append(f"skipped {count} x {reason} (first at {stats.first_skip[reason]})")
    return lines


def run(args: argparse.Namespace) -> int:
    from helios_orderflow.recording.writer import RecordingWriter

    stats = ImportStats()
    t0 = time.monotonic()
    events = iter_import(args.format, args.src, stats=stats, **importer_options(args))
    with RecordingWriter(args.out, RecordingSettings(), flush_by_time=False) as writer:
        for ev in events:
            writer.write(ev)
        n = writer.events_written
    took = time.monotonic() - t0
    print(f"imported {n} events from {len(args.src)} file(s) into {args.out} in {took:.1f}s")
    for line in import_summary(stats):
        print(line)
    return 0
