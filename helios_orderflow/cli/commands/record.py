"""``helios record --exchange EX --pairs P... --out DIR [--ccxt-config JSON]``: record live L2 books, trades
and best bid/offer to a Helios recording with the same feed the strategy runs. Ctrl-C stops cleanly:
everything received is flushed to disk before it exits. ``--retention-days``/``--max-gb`` bound the disk (the
oldest whole days go first); a full disk pauses recording until space returns."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import FeedSettings, HeliosSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "record",
        help="record live order books, trades and best bid/offer to a Helios recording",
        description=__doc__,
    )
    p.add_argument("--exchange", required=True, help="ccxt exchange id (binance, binanceusdm, kraken, okx, ...)")
    p.add_argument("--pairs", required=True, nargs="+", help="unified symbols, e.g. BTC/USDT ETH/USDT")
    p.add_argument("--out", required=True,
                   help="recording directory (created if missing), or an object store's folder: s3://bucket/prefix "
                   "(endpoint: ?endpoint_override=host:port or AWS_ENDPOINT_URL; credentials: AWS_ACCESS_KEY_ID...)")
    p.add_argument(
        "--ccxt-config", default=None, metavar="JSON",
        help="ccxt client config as JSON text or a path to a JSON file, e.g. the local exchange's "
        '{"urls": {...}} override printed by `helios exchange`',
    )
    p.add_argument("--depth", type=int, default=FeedSettings().book_depth,
                   help="book levels per side (default %(default)s)")
    p.add_argument("--no-bbo", action="store_true", help="do not record the best bid/offer stream")
    p.add_argument("--engine", action="store_true", help="also run the order-flow engine (shows it keeps up)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--retention-days", type=int, default=0, metavar="N",
                   help="keep N UTC days, today included; older whole days are deleted (default: keep all)")
    p.add_argument("--max-gb", type=float, default=0.0, metavar="GB",
                   help="keep the recording under GB (1e9 bytes), deleting the oldest whole days (default: no limit)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between progress lines (default 5)")
    p.set_defaults(func=run)


def load_ccxt_config(text: str | None) -> dict[str, Any]:
    """``--ccxt-config``: JSON text, or the path of a JSON file (a Freqtrade config's ``exchange.ccxt_config``
    shape)."""
    if not text:
        return {}
    source = "--ccxt-config"
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--ccxt-config {text!r} is neither JSON text nor an existing file")
        source, text = str(path), path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON ({exc}); e.g. '{{\"urls\": {{...}}}}'") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def progress_line(feed: Any, elapsed_s: float, events_before: int, interval_s: float) -> str:
    """``pairs 3/3 healthy | 412.0 events/s | 10234 events, 1.2 MB written | ETH/USDT: stale ...``."""
    state = feed.state
    healthy = [s for s in state.symbols if state.is_healthy(s)]
    rate = (feed.stats.events - events_before) / interval_s if interval_s > 0 else 0.0
    written, size = feed.recording_stats()
    line = (
        f"{elapsed_s:7.0f}s  pairs {len(healthy)}/{len(state.symbols)} healthy | {rate:8.1f} events/s | "
        f"{written} events, {_size(size)} written"
    )
    sick = [f"{s}: {'; '.join(state.problems(s))}" for s in state.symbols if s not in healthy]
    if sick:
        line += " | " + " | ".join(sick)
    warned = sorted({w for s in state.symbols for w in state.warnings(s)})  # e.g. recording paused: disk full
    if warned:
        line += " | " + " | ".join(warned)
    return line


def run(args: argparse.Namespace) -> int:
    from helios_orderflow.live.feed import Feed

    if args.interval <= 0:
        raise ConfigError(f"--interval must be > 0 seconds, got {args.interval}")
    settings = HeliosSettings.from_dict({"feed": {"book_depth": args.depth, "bbo": not args.no_bbo},
                                         "recording": {"retention_days": args.retention_days,
                                                       "max_gb": args.max_gb}})
    feed = Feed(args.exchange, args.pairs, settings, ccxt_config=load_ccxt_config(args.ccxt_config),
                record_to=args.out, engine=bool(args.engine))
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    print(f"recording {', '.join(feed.symbols)} from {args.exchange} to {args.out} (Ctrl-C stops)", flush=True)
    feed.start()
    try:
        before, last = 0, t0
        while not stop.is_set():
            wait = args.interval
            if args.duration is not None:
                wait = min(wait, max(0.0, args.duration - (time.monotonic() - t0)))
            stop.wait(wait)
            now = time.monotonic()
            print(progress_line(feed, now - t0, before, now - last), flush=True)
            before, last = feed.stats.events, now
            elapsed = now - t0
            if args.duration is not None and elapsed >= args.duration:
                break
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr, flush=True)
    finally:
        feed.stop()
        if not feed.wait_recording(60):
            print("helios record: the recording is still being written after 60 s; it may be incomplete",
                  file=sys.stderr)
        signal.signal(signal.SIGTERM, previous)
    written, size = feed.recording_stats()
    print(f"recorded {written} events ({_size(size)}) in {time.monotonic() - t0:.0f} s to {args.out}")
    return 0
