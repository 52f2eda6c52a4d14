"""``helios compact DIR [--exchange EX] [--symbol SYM] [--date YYYY-MM-DD]``: merge each day's segment files into
one file per table and stream (same rows, same order), atomically and safely beside a live ``helios record`` or
bot writing the same recording: a file the writer may still rewrite is left alone, and readers never see a row
twice or miss one (docs/recording.md, "Compaction and retention"). Run it again at any time: it only merges
what is new."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compact",
        help="merge a recording's small segment files into one per day, table and stream",
        description=__doc__,
    )
    p.add_argument("recording", type=Path, help="a Helios recording directory")
    p.add_argument("--exchange", default=None, help="only this exchange (ccxt id)")
    p.add_argument("--symbol", default=None, help="only this symbol (unified, e.g. BTC/USDT)")
    p.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="only this UTC day")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from helios_orderflow.recording.compact import compact_recording

    stats = compact_recording(args.recording, exchange=args.exchange, symbol=args.symbol, date=args.date)
    if not stats.merged_files and not stats.leftovers_removed:
        print(f"{args.recording}: nothing to compact")
        return 0
    print(
        f"{args.recording}: {stats.parts_merged} files merged into {stats.merged_files} ({stats.rows} rows, "
        f"{stats.bytes_before / 1e6:.1f} MB -> {stats.bytes_after / 1e6:.1f} MB)"
        + (f"; {stats.leftovers_removed} leftovers of an interrupted compaction removed"
           if stats.leftovers_removed else "")
    )
    return 0
