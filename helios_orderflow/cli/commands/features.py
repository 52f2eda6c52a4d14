"""``helios features REC``: the per-candle order-flow feature table of a recording (cached)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.candles import timeframe_us
from helios_orderflow.features.compute import compute_features, resolve_stream


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "features",
        help="per-candle order-flow features of a recording (the table backtesting uses)",
        description="Replay a recording through the order-flow engine and write one row per candle (OHLCV, delta, "
        "CVD, VWAP bands, OFI, imbalances, walls, signal flags; see docs/signals.md); the last row is the candle "
        "still open when the recording ends. Results are cached under REC/.cache/features.",
    )
    p.add_argument("recording", metavar="REC", help="recording directory (from 'helios record' or 'helios import')")
    p.add_argument("--timeframe", default="1m", help="candle length, Freqtrade style (default 1m)")
    p.add_argument("--exchange", help="ccxt exchange id (needed when the recording has several)")
    p.add_argument("--symbol", help="unified symbol, e.g. BTC/USDT (needed when the recording has several)")
    p.add_argument("--start", help="first time to include, ISO 8601 UTC (e.g. 2024-08-09T00:00)")
    p.add_argument("--end", help="time to stop before, ISO 8601 UTC")
    p.add_argument("--out", help="write the table to FILE.parquet or FILE.csv")
    p.add_argument("--config", help="Freqtrade config whose 'helios' section sets the engine settings")
    p.add_argument("--no-cache", action="store_true", help="recompute and do not write the cache")
    p.add_argument("--cache-dir", help="keep the cache here instead of REC/.cache/features")
    p.set_defaults(func=run)


def _time_us(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise HeliosError(f"{flag} {text!r} is not an ISO 8601 time like 2024-08-09T00:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1_000_000)


def _settings(path: str | None) -> HeliosSettings:
    if path is None:
        return HeliosSettings()
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise HeliosError(f"cannot read config {path!r}: {exc}") from None
    from helios_orderflow.freqtrade.config import read_section

    # The whole `helios` section (strategy/backtest/dashboard keys included) is validated; features use the
    # engine part.
    return read_section(config.get("helios") if isinstance(config, dict) else None)[0]


def run(args: argparse.Namespace) -> int:
    root = Path(args.recording)
    if not root.is_dir():
        raise HeliosError(f"recording '{root}' is not a directory; record with 'helios record' or import with "
                          "'helios import'")
    timeframe_us(args.timeframe)  # validate before any work
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".parquet", ".csv"):
        raise HeliosError(f"--out {out}: the file name must end in .parquet or .csv")
    settings = _settings(args.config)
    exchange, symbol = resolve_stream(root, args.symbol, args.exchange)
    t0 = time.perf_counter()
    frame = compute_features(
        root, symbol, args.timeframe, settings, exchange=exchange,
        start_us=_time_us(args.start, "--start"), end_us=_time_us(args.end, "--end"),
        cache=not args.no_cache, cache_dir=args.cache_dir, progress=sys.stderr.isatty(),
    )
    took = time.perf_counter() - t0
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    n = len(frame)
    print(f"{exchange} {symbol} {args.timeframe}: {n} candles (the last one may still be open) "
          f"(cache {frame.attrs.get('helios_cache', 'off')}, {took:.2f}s)")
    if n:
        print(f"  from {frame['date'].iloc[0]} to {frame['date'].iloc[-1]}")
        print(f"  volume {frame['volume'].sum():.8g}, trades {int(frame['trades'].sum())}, "
              f"delta sum {frame['delta'].sum():.8g}, last cvd {frame['cvd'].iloc[-1]:.8g}, "
              f"last vwap {frame['vwap'].iloc[-1]:.8g}")
        print(f"  candles with a bid wall {int(frame['bid_wall_price'].notna().sum())}, ask wall "
              f"{int(frame['ask_wall_price'].notna().sum())}, book ok {int(frame['book_ok'].sum())}/{n}")
        print(f"  absorption bull/bear {int(frame['absorption_bull'].sum())}/{int(frame['absorption_bear'].sum())}, "
              f"exhaustion up/down {int(frame['exhaustion_up'].sum())}/{int(frame['exhaustion_down'].sum())}")
    if out is not None:
        print(f"  written to {out}")
    return 0
