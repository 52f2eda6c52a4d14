"""``helios dashboard --recording DIR``: the liquidity page on a recording (standalone mode)."""

from __future__ import annotations

import argparse
import time

from helios_orderflow.core.errors import HeliosError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "dashboard",
        help="liquidity heatmap page on a recording (Bookmap-style; open the printed URL)",
        description="Replay a recording through the order-flow engine and serve the liquidity page: heatmap, "
        "trades, candles with VWAP, CVD, OFI, walls and signals, with a time-range control. Binds 127.0.0.1 "
        "by default; any other --host needs HELIOS_DASHBOARD_USER and HELIOS_DASHBOARD_PASSWORD.",
    )
    p.add_argument("--recording", required=True, metavar="DIR", help="recording directory (helios record/import)")
    p.add_argument("--exchange", help="only this ccxt exchange id")
    p.add_argument("--symbol", help="only this unified symbol, e.g. BTC/USDT")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="TCP port (default 8050, 0 = any free port)")
    p.add_argument("--timeframe", default="1m", help="engine candle timeframe; the page offers multiples (default 1m)")
    p.add_argument("--pace", type=float, help="replay at this multiple of recorded time (default: as fast as possible)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the other commands must not pay for importing Dash.
    from dashboard.app import run_in_thread
    from dashboard.settings import DashboardSettings, check_bind
    from dashboard.sources import RecordingSource

    settings = DashboardSettings(host=args.host, port=args.port)
    check_bind(settings.host, settings.credentials())  # before the replay starts: fail fast
    if args.pace is not None and args.pace <= 0:
        raise HeliosError(f"--pace must be > 0, got {args.pace}")
    source = RecordingSource(args.recording, exchange=args.exchange, symbol=args.symbol, dashboard=settings,
                             timeframe=args.timeframe, pace=args.pace)
    handle = run_in_thread(source, settings)
    print(f"Helios dashboard: {handle.url}  ({len(source.pairs())} pair(s); Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0
