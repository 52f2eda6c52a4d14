"""``python -m helios_orderflow.devtools.soak`` (``make soak``): the command line, and the hidden
``--exchange-child`` mode the run starts its exchange with."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.devtools.soak.memdiag import GARBAGE_ENV
from helios_orderflow.devtools.soak.report import RECOVERY_LIMIT_S, print_report
from helios_orderflow.devtools.soak.schedule import PAIRS, QUIET_S

DESCRIPTION = "The soak: the whole live pipeline against the local exchange for N minutes, under faults, measured."


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helios_orderflow.devtools.soak", description=DESCRIPTION)
    p.add_argument("--minutes", type=float, default=30.0, help="measured minutes after the warm-up (default 30)")
    p.add_argument("--pairs", type=int, default=10, help=f"pairs, 1..{len(PAIRS)} (default 10)")
    p.add_argument("--rate-x", type=float, default=10.0, help="times Binance's message rate (default 10)")
    p.add_argument("--seed", type=int, default=1, help="market and fault seed (default 1)")
    p.add_argument("--warmup-s", type=float, default=120.0,
                   help="seconds before RSS/CPU are taken and faults start (default 120: two recording segments)")
    p.add_argument("--keepalive-s", type=float, default=5.0, help="the feed's websocket keepalive (default 5)")
    p.add_argument("--quiet-s", type=float, default=QUIET_S,
                   help=f"seconds between fault windows (default {QUIET_S:g})")
    p.add_argument("--segment-s", type=float, default=60.0, help="recording segment length (default 60)")
    p.add_argument("--heatmap-window-s", type=float, default=60.0,
                   help="the engine's heatmap window (default 60, shorter than the warm-up: see docs/reliability.md)")
    p.add_argument("--out", type=Path, default=None, help="run directory (default soak-runs/<time>)")
    p.add_argument("--with-freqtrade", action=argparse.BooleanOptionalAction, default=True,
                   help="also run a Freqtrade dry-run of HeliosStrategy against it, with a changing whitelist and "
                        "a disk-full window (default on; --no-with-freqtrade: the feed alone)")
    p.add_argument("--whitelist-every-s", type=float, default=None,
                   help="seconds between whitelist changes (default: a third of the measured time, 20 to 90)")
    p.add_argument("--disk-window", action=argparse.BooleanOptionalAction, default=True,
                   help="fill the bot's recording disk (a tmpfs) for a while (default on; needs mount rights)")
    p.add_argument("--recovery-limit-s", type=float, default=RECOVERY_LIMIT_S,
                   help=f"pass only if every fault window recovers within this (default {RECOVERY_LIMIT_S:g})")
    p.add_argument("--memdiag", action="store_true",
                   help="both processes write what their memory is made of every minute (memdiag-*.jsonl: RSS "
                        "by mapping, glibc malloc, pymalloc arenas, objects by type); a diagnostic, not a measurement")
    p.add_argument("--memdiag-garbage", action="store_true",
                   help="with --memdiag: every five samples, what a full collection finds unreachable, by type and "
                        "frame (memdiag.garbage_census; it collects, so it changes what RSS does)")
    p.add_argument("--memdiag-trace-frames", type=int, default=0,
                   help="with --memdiag: also trace allocations (tracemalloc, this many frames) and write their "
                        "growth from the third measured minute (memdiag-*-growth.txt); slows what it traces")
    p.add_argument("--memdiag-trace-in", nargs="+", choices=("feed", "bot"), default=["feed", "bot"],
                   help="the processes --memdiag-trace-frames traces (default both; tracing hides pymalloc's "
                        "arena counts)")

    # internal: the exchange child
    p.add_argument("--exchange-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--run-s", type=float, help=argparse.SUPPRESS)
    p.add_argument("--symbols", nargs="+", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its report; exit status 0 when it passed, 1 when not, 2 on a usage error."""
    args = parser().parse_args(argv)
    if args.exchange_child:
        from helios_orderflow.devtools.soak.exchange_child import run_exchange_child

        return run_exchange_child(Path(args.dir), list(args.symbols), rate_x=args.rate_x, seed=args.seed,
                                  warmup_s=args.warmup_s, run_s=args.run_s, keepalive_s=args.keepalive_s,
                                  quiet_s=args.quiet_s)
    from helios_orderflow.devtools.soak.run import run_soak

    # Started in the background from a script, the soak inherits SIGINT ignored, and so would the bot: neither
    # Ctrl-C nor the soak's own SIGINT to the bot (a clean stop closes its recording) would then stop anything.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out: Path = args.out or Path("soak-runs") / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    if args.memdiag_garbage:  # read by memdiag in this process and in the bot, which inherits the environment
        os.environ[GARBAGE_ENV] = "1"
    # The feed logs every fault it survives (hundreds): to a file, so the progress line stays readable.
    logging.basicConfig(filename=out / "helios.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        report = run_soak(args.minutes, out, pairs=args.pairs, rate_x=args.rate_x, seed=args.seed,
                          warmup_s=args.warmup_s, keepalive_s=args.keepalive_s, quiet_s=args.quiet_s,
                          segment_s=args.segment_s, heatmap_window_s=args.heatmap_window_s,
                          with_freqtrade=args.with_freqtrade, recovery_limit_s=args.recovery_limit_s,
                          whitelist_every_s=args.whitelist_every_s, disk_window=args.disk_window,
                          memdiag=args.memdiag, memdiag_trace_frames=args.memdiag_trace_frames,
                          memdiag_trace_in=tuple(args.memdiag_trace_in))
    except HeliosError as exc:
        print(f"helios soak: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    print(f"report: {out / 'soak.json'}")
    return 0 if report["passed"] else 1
