"""``helios features REC``: the per-candle order-flow feature table of a recording (cached)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.candles import timeframe_us
from helios_orderflow.features.compute import resolve_stream
from helios_orderflow.features.parallel import compute_many
from helios_orderflow.recording.reader import index_recording, list_streams
from helios_orderflow.recording.store import location


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "features",
        help="per-candle order-flow features of a recording (the table backtesting uses)",
        description="Replay a recording through the order-flow engine and write one row per candle (OHLCV, delta, "
        "CVD, VWAP bands, OFI, imbalances, walls, signal flags; see docs/signals.md); the last row is the candle "
        "still open when the recording ends. Without --symbol/--exchange, every stream of the recording. Results "
        "are cached under REC/.cache/features.",
    )
    p.add_argument("recording", metavar="REC", help="recording directory (from 'helios record' or 'helios import'), "
                   "or an object store's folder, e.g. s3://bucket/prefix")
    p.add_argument("--timeframe", default="1m", help="candle length, Freqtrade style (default 1m)")
    p.add_argument("--exchange", help="ccxt exchange id (default: every stream of the recording)")
    p.add_argument("--symbol", help="unified symbol, e.g. BTC/USDT (default: every stream of the recording)")
    p.add_argument("--start", help="first time to include, ISO 8601 UTC (e.g. 2024-08-09T00:00)")
    p.add_argument("--end", help="time to stop before, ISO 8601 UTC")
    p.add_argument("--out", help="write the table to FILE.parquet or FILE.csv")
    p.add_argument("--config", help="Freqtrade config whose 'helios' section sets the engine settings")
    p.add_argument("--no-cache", action="store_true",
                   help="recompute; neither read nor write the cache and the midnight checkpoints")
    p.add_argument("--cache-dir", help="keep the cache here instead of REC/.cache/features")
    p.add_argument("--workers", type=int, default=0,
                   help="local worker processes, one (pair, UTC day) chunk each (default 0: one per CPU core; "
                   "1: this process); the same results, bit for bit (docs/research.md)")
    p.add_argument("--dask", metavar="ADDRESS", default="",
                   help="build on the Dask cluster whose scheduler is ADDRESS (e.g. tcp://scheduler:8786) instead "
                   "of local processes; every worker must see REC at the same path")
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
    settings = _settings(args.config)
    # A local folder, or an object store's (s3://bucket/prefix; endpoint from the URL, the config's
    # recording.endpoint_url or AWS_ENDPOINT_URL).
    root = location(args.recording, endpoint_url=settings.recording.endpoint_url)
    if isinstance(root, Path) and not root.is_dir():
        raise HeliosError(f"recording '{root}' is not a directory; record with 'helios record' or import with "
                          "'helios import'")
    timeframe_us(args.timeframe)  # validate before any work
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".parquet", ".csv"):
        raise HeliosError(f"--out {out}: the file name must end in .parquet or .csv")
    index = index_recording(root)  # one walk (on an object store, one listing) for the lookup and the read
    if args.symbol is None and args.exchange is None and len(index.files) > 1:
        streams = list_streams(index)  # every stream, built together
    else:
        streams = [resolve_stream(index, args.symbol, args.exchange)]
    if out is not None and len(streams) > 1:
        raise HeliosError(f"--out {out}: the recording has {len(streams)} streams; choose one with --symbol")
    t0 = time.perf_counter()
    frames = compute_many(
        index, streams, args.timeframe, settings, workers=args.workers, dask=args.dask,
        start_us=_time_us(args.start, "--start"), end_us=_time_us(args.end, "--end"),
        cache=not args.no_cache, cache_dir=args.cache_dir, progress=sys.stderr.isatty(),
    )
    took = time.perf_counter() - t0
    for (exchange, symbol), frame in frames.items():
        _summary(exchange, symbol, args.timeframe, frame)
    print(f"{len(frames)} stream(s) in {took:.2f}s")
    if out is not None:
        frame = frames[streams[0]]
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            frame.to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    if out is not None:
        print(f"  written to {out}")
    return 0


def _summary(exchange: str, symbol: str, timeframe: str, frame: pd.DataFrame) -> None:
    n = len(frame)
    print(f"{exchange} {symbol} {timeframe}: {n} candles (the last one may still be open) "
          f"(cache {frame.attrs.get('helios_cache', 'off')}, {frame.attrs.get('helios_chunks', '')})")
    if n:
        print(f"  from {frame['date'].iloc[0]} to {frame['date'].iloc[-1]}")
        print(f"  volume {frame['volume'].sum():.8g}, trades {int(frame['trades'].sum())}, "
              f"delta sum {frame['delta'].sum():.8g}, last cvd {frame['cvd'].iloc[-1]:.8g}, "
              f"last vwap {frame['vwap'].iloc[-1]:.8g}")
        print(f"  candles with a bid wall {int(frame['bid_wall_price'].notna().sum())}, ask wall "
              f"{int(frame['ask_wall_price'].notna().sum())}, book ok {int(frame['book_ok'].sum())}/{n}")
        print(f"  absorption bull/bear {int(frame['absorption_bull'].sum())}/{int(frame['absorption_bear'].sum())}, "
              f"exhaustion up/down {int(frame['exhaustion_up'].sum())}/{int(frame['exhaustion_down'].sum())}")
