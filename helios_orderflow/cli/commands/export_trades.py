"""``helios export-trades REC --datadir DIR``: a recording's trades in Freqtrade's trades format, so that
``freqtrade trades-to-ohlcv`` builds the candles backtesting needs (see export_trades.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from helios_orderflow.features.export_trades import FORMATS, export_trades


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "export-trades",
        help="write a recording's trades in Freqtrade's trades format (for trades-to-ohlcv)",
        description="Write every stream's trades of a recording to DIR/<PAIR>-trades.feather (futures: "
        "DIR/futures/), the files 'freqtrade download-data --dl-trades' writes. Then build candles with "
        "'freqtrade trades-to-ohlcv --datadir DIR --pairs ... --timeframes 1m'.",
    )
    p.add_argument("recording", metavar="REC", help="recording directory")
    p.add_argument("--datadir", required=True, type=Path,
                   help="Freqtrade's data folder of the exchange, e.g. user_data/data/binance")
    p.add_argument("--exchange", help="only this ccxt exchange id's streams")
    p.add_argument("--symbols", nargs="+", help="only these pairs (unified, e.g. BTC/USDT)")
    p.add_argument("--trading-mode", choices=("spot", "futures"),
                   help="where to write (default: futures for BTC/USDT:USDT-style pairs, else spot)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="feather",
                   help="Freqtrade's dataformat_trades (default feather)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for e in export_trades(args.recording, args.datadir, exchange=args.exchange, symbols=args.symbols,
                           trading_mode=args.trading_mode, fmt=args.fmt):
        print(f"{e.exchange} {e.pair}: {e.trades} trades -> {e.path}")
    return 0
