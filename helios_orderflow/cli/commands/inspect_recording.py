"""``helios inspect DIR [--json]``: rebuild books from a recording (or straight from source files with
``--format``) and report sequence gaps, declared gaps (checksum mismatches among them), crossed books, best
bid/offer checks, duplicate and out-of-order trade ids, and taker volumes. With ``--format`` the importer's own
counters follow, as ``helios import`` prints them (checksums verified, what was skipped)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from helios_orderflow.cli.commands.import_data import import_summary, importer_options
from helios_orderflow.importers import FORMATS, ImportStats, iter_import
from helios_orderflow.recording.audit import StreamReport, inspect_events
from helios_orderflow.recording.store import is_url


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "inspect",
        help="check a recording: gaps, crossed books, best bid/offer agreement, duplicate trades, CVD",
        description=__doc__,
    )
    p.add_argument("src", nargs="+", type=_path_or_url,
                   help="a recording directory (or an object store's folder, s3://bucket/prefix), or source files "
                   "with --format")
    p.add_argument("--format", choices=sorted(FORMATS), default=None, help="inspect source files directly")
    p.add_argument("--exchange", default=None, help="only this exchange (or: the source's exchange)")
    p.add_argument("--symbol", default=None, help="only this symbol (or: the source's symbol)")
    p.add_argument("--json", action="store_true", help="print JSON (a list, one object per stream)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _path_or_url(text: str) -> Path | str:
    """A local path, or an object store URL kept as it is (``Path`` would fold ``s3://`` into ``s3:/``)."""
    return text if is_url(text) else Path(text)


def _when(ts_us: int | None) -> str:
    if ts_us is None:
        return "-"
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_report(r: StreamReport) -> str:
    lines = [
        f"{r.exchange} {r.symbol}",
        f"  span         {_when(r.first_ts_us)} .. {_when(r.last_ts_us)} UTC",
        f"  book         {r.snapshots} snapshots, {r.book_events} deltas ({r.stale_dropped} older than snapshot)",
        f"  integrity    {r.seq_gaps} sequence gaps, {r.declared_gaps} declared gaps, {r.crossed} crossed",
        f"  bbo checks   {r.bbo_checks} of {r.bbo_events} venue best bid/offer, {r.bbo_mismatches} mismatches",
        f"  final best   bid {r.best_bid}  ask {r.best_ask}",
        f"  trades       {r.trades}: taker buy {r.taker_buy:.8f}, taker sell {r.taker_sell:.8f}, cvd {r.cvd:.8f}"
        + (f" ({r.trades_not_counted} delivered again, not counted)" if r.trades_not_counted else ""),
        f"  trade ids    {r.duplicate_trade_ids} duplicates, {r.out_of_order_trade_ids} out of order"
        + (f", numbering restarted {r.trade_id_restarts}x" if r.trade_id_restarts else ""),
    ]
    if r.first_mismatch:
        lines.append(f"  first mismatch: {r.first_mismatch}")
    if r.last_gap:
        lines.append(f"  last gap: {r.last_gap}")
    if r.last_declared_gap:
        lines.append(f"  last declared gap: {r.last_declared_gap}")
    if r.first_duplicate:
        lines.append(f"  first duplicate: {r.first_duplicate}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    stats: ImportStats | None = None
    if args.format:
        stats = ImportStats()
        events = iter_import(args.format, args.src, stats=stats, **importer_options(args))
        reports = inspect_events(events)
    else:
        from helios_orderflow.recording.reader import read_events

        if len(args.src) != 1:
            raise SystemExit("helios inspect: give one recording directory, or source files with --format")
        reports = inspect_events(read_events(args.src[0], exchange=args.exchange, symbol=args.symbol))
    if args.json:
        print(json.dumps([r.to_dict() for r in reports.values()], indent=2))
    else:
        if not reports:
            print("no events found")
        for r in reports.values():
            print(format_report(r))
    if stats is not None:
        # After the JSON, on stderr, so that the JSON stays the same whether read from a recording or a source.
        for line in import_summary(stats):
            print(line, file=sys.stderr if args.json else sys.stdout)
    return 0
