"""``helios exchange``: a local exchange (REST + websockets) on 127.0.0.1 that speaks one venue's public
protocol (``--venue``: binance, bybit, okx, gate or kucoin), with a synthetic or replayed market and
optional fault injection. Point ccxt or Freqtrade at it with the ``exchange.name`` and
``exchange.ccxt_config`` it prints at start-up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import HeliosError

DEFAULT_SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from helios_orderflow.emulator.dialects import VENUES

    p = sub.add_parser("exchange", help="run a local exchange in a venue's protocol (synthetic or replay)",
                       description=__doc__)
    p.add_argument("--venue", choices=VENUES, default="binance",
                   help="the venue whose public REST and websocket protocol it speaks (default binance)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true", help="an endless seeded stochastic market")
    src.add_argument("--replay", type=Path, metavar="REC", help="play a Helios recording")
    p.add_argument("--symbols", nargs="+", default=None,
                   help="synthetic: ccxt symbols, BTC/USDT spot or BTC/USDT:USDT futures (default "
                        f"{' '.join(DEFAULT_SYMBOLS)}); replay: only these (default: all in the recording)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: the market's seed (default 0)")
    p.add_argument("--history-minutes", type=int, default=3000,
                   help="1m candles back-filled before start so indicators are warm (default 3000)")
    p.add_argument("--warm-up-minutes", type=float, default=0.0,
                   help="synthetic: run the market this many simulated minutes before serving, so its book is "
                        "lived-in (about 10 fills it up; default 0: a freshly seeded book)")
    p.add_argument("--speed", type=float, default=1.0, help="replay: play X times faster (default 1)")
    p.add_argument("--loop", action="store_true", help="replay: start over at the end, ids continuing")
    p.add_argument("--faults", default=None, metavar="SPEC",
                   help="inject faults, e.g. drop=1/50,rest5xx=0.05,disconnect=30 (see README)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--ping-interval", type=float, default=20.0, help="seconds between server pings (default 20)")
    p.set_defaults(func=run)


def build_source(args: argparse.Namespace) -> Any:
    if args.synthetic:
        from helios_orderflow.emulator.synthetic import SyntheticSource

        return SyntheticSource(args.symbols or DEFAULT_SYMBOLS, seed=args.seed,
                               history_minutes=args.history_minutes, warm_up_s=args.warm_up_minutes * 60)
    from helios_orderflow.emulator.replay import ReplaySource

    return ReplaySource(args.replay, symbols=args.symbols, speed=args.speed, loop=args.loop,
                        history_minutes=args.history_minutes)


def run(args: argparse.Namespace) -> int:
    from helios_orderflow.emulator.faults import parse_faults
    from helios_orderflow.emulator.server import ExchangeServer, startup_line

    if args.speed <= 0:
        raise HeliosError(f"--speed must be > 0, got {args.speed}")
    faults = parse_faults(args.faults)
    source = build_source(args)
    server = ExchangeServer(source, host=args.host, port=args.port, faults=faults,
                            ping_interval_s=args.ping_interval, venue=args.venue)

    async def main() -> None:
        try:
            await server.start()
        except OSError as exc:
            raise HeliosError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}; "
                              "pick another --port (0 = any free port)") from None
        print(startup_line(server), flush=True)
        if faults:
            print(f"helios exchange: faults {faults.spec}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        print(f"helios exchange: stopped; {server.log.diffs_published} diffs, {server.log.trades_published} "
              f"trades, {server.log.ws_connections} websocket connections, faults {faults.counts}", flush=True)
        print(f"helios exchange: REST requests {json.dumps(server.log.rest_by_path, sort_keys=True)}", flush=True)
        print(f"helios exchange: subscriptions {json.dumps(server.log.subscriptions, sort_keys=True)}; "
              f"{server.log.kline_messages} kline messages", flush=True)

    asyncio.run(main())
    return 0
