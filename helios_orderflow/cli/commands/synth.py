"""``helios synth --symbols ... --hours N --seed S --out REC``: write the local exchange's synthetic market
as a Helios recording (no sockets, no waiting), for backtests and benchmarks. The same seed, symbols and
``--start`` give the same recording; it is the market ``helios exchange --synthetic`` serves."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from helios_orderflow.core.errors import HeliosError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("synth", help="write the synthetic market as a recording", description=__doc__)
    p.add_argument("--symbols", nargs="+", default=["BTC/USDT", "ETH/USDT", "SOL/USDT"],
                   help="ccxt symbols (BTC/USDT spot, BTC/USDT:USDT futures)")
    p.add_argument("--hours", type=float, default=1.0, help="hours of market to write (default 1)")
    p.add_argument("--seed", type=int, default=0, help="the market's seed (default 0)")
    p.add_argument("--start", default="2024-01-01T00:00:00",
                   help="UTC start time, ISO 8601 (default 2024-01-01T00:00:00)")
    p.add_argument("--out", type=Path, required=True, help="recording directory to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from helios_orderflow.emulator.synth import write_synthetic

    if args.hours <= 0:
        raise HeliosError(f"--hours must be > 0, got {args.hours}")
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        raise HeliosError(f"--start {args.start!r} is not an ISO 8601 time like 2024-01-01T00:00:00") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    origin_us = int(start.timestamp()) * 1_000_000
    duration_us = int(args.hours * 3600 * 1_000_000)

    def progress(n: int, done_us: int) -> None:
        print(f"\rhelios synth: {n:,} events, {done_us / 3.6e9:.2f} of {args.hours} h", end="", file=sys.stderr)

    n, took = write_synthetic(str(args.out), args.symbols, args.seed, origin_us, duration_us, progress)
    print(file=sys.stderr)
    print(f"helios synth: wrote {n:,} events ({', '.join(args.symbols)}, {args.hours} h, seed {args.seed}) "
          f"to {args.out} in {took:.1f} s ({n / max(took, 1e-9):,.0f} events/s)")
    return 0
