"""``helios init``: write a Freqtrade config for HeliosStrategy, with freshly generated API server secrets.

The file is created with mode 0600 (owner read/write only) from the first byte, never chmod-ed after
writing. An existing file is left alone unless ``--force`` is given; with ``--force`` it is replaced
atomically by a new 0600 file. Secrets are never printed: the command says where they are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.freqtrade.config_template import EXCHANGES, LOCAL_EXCHANGE_PORT, InitOptions, build_config
from helios_orderflow.freqtrade.credentials import ApiServerCredentials, install_redaction, secret_values_from_config

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("user_data") / "config.json"
FILE_MODE = 0o600


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="write a Freqtrade config for HeliosStrategy (mode 0600, generated API password)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help=f"file to write (default {DEFAULT_CONFIG})")
    p.add_argument(
        "--exchange",
        choices=EXCHANGES,
        default="binance",
        help="the venue's ccxt id: binance, bybit, okx, gate, kucoin (spot; --futures for perpetuals), "
             "binanceusdm (Binance USD-M futures) or local (Helios' exchange emulator, dry-run only)",
    )
    p.add_argument("--futures", action="store_true",
                   help="USDT-margined perpetuals (BTC/USDT:USDT) on binance, bybit or okx instead of spot")
    p.add_argument("--local-venue", default="binance", choices=("binance", "bybit", "okx", "gate", "kucoin"),
                   help="the protocol the local exchange speaks (helios exchange --venue) for --exchange local")
    p.add_argument(
        "--pairs",
        nargs="+",
        default=None,
        metavar="PAIR",
        help="pairs in ccxt form: BTC/USDT (spot), BTC/USDT:USDT (futures); default BTC and ETH",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="dry_run", action="store_true", default=True, help="paper trading (default)")
    mode.add_argument("--live", dest="dry_run", action="store_false", help="real orders with real money")
    p.add_argument("--stake-currency", default="USDT", help="quote currency of the pairs (default USDT)")
    p.add_argument(
        "--api-server",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="enable Freqtrade's API server / FreqUI on 127.0.0.1:8080 (default: enabled)",
    )
    p.add_argument(
        "--local-host",
        default="127.0.0.1",
        help="host of the local exchange for --exchange local (default 127.0.0.1; 'exchange' in docker compose)",
    )
    p.add_argument(
        "--local-port",
        type=int,
        default=LOCAL_EXCHANGE_PORT,
        help=f"port of the local exchange for --exchange local (default {LOCAL_EXCHANGE_PORT})",
    )
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def write_private_file(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600 from creation on.

    Without ``force`` the file is created exclusively (``O_EXCL``): an existing file raises HeliosError and
    is not touched. With ``force`` a 0600 temporary file in the same directory replaces it atomically, so
    the old file's permissions never carry over and a reader never sees a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            raise HeliosError(
                f"{path} already exists and was left unchanged; pass --force to replace it "
                "(this generates new API server secrets), or choose another file with --config"
            ) from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return
    # mkstemp creates the file 0600 with O_EXCL.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _local_ccxt_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ccxt config of a local exchange speaking a venue other than Binance (its dialect's)."""
    if args.exchange != "local" or args.local_venue == "binance":
        return None
    from helios_orderflow.emulator.dialects import dialect_class

    market = "linear" if args.futures else "spot"
    return dialect_class(args.local_venue).ccxt_config(f"http://{args.local_host}:{args.local_port}", market)


def run(args: argparse.Namespace) -> int:
    # Anything a library logs from here on cannot show the keys already in the environment.
    install_redaction(secret_values_from_config(None, os.environ))
    options = InitOptions(
        exchange=args.exchange,
        pairs=tuple(args.pairs or ()),
        dry_run=args.dry_run,
        stake_currency=args.stake_currency,
        api_server=args.api_server,
        local_host=args.local_host,
        local_port=args.local_port,
        perpetuals=args.futures,
        local_venue=args.local_venue,
        local_ccxt_config=_local_ccxt_config(args),
    )
    credentials = ApiServerCredentials.generate()
    install_redaction(credentials.values())
    config = build_config(options, credentials)
    path: Path = args.config
    write_private_file(path, json.dumps(config, indent=4) + "\n", force=args.force)
    log.debug("wrote %s with mode %o", path, FILE_MODE)

    mode = "dry-run" if options.dry_run else "LIVE"
    kind = "perpetuals" if options.futures else "spot"
    market = (f"local exchange at http://{options.local_host}:{options.local_port} speaking {options.venue}, {kind}"
              if options.exchange == "local" else f"{options.venue} {kind}")
    pairs = ", ".join(config["exchange"]["pair_whitelist"])
    print(f"wrote {path} (mode 0600): {market}, {mode}, pairs {pairs}")
    if options.api_server:
        print(
            f"FreqUI / API: http://127.0.0.1:8080, user {credentials.username!r}; the password is in the file: "
            f"jq -r .api_server.password {path}"
        )
    else:
        print("API server: disabled (secrets generated anyway; set api_server.enabled to true to use it)")
    if options.exchange == "local":
        print(f"start the local exchange first: helios exchange --synthetic --venue {options.venue}")
    elif not options.dry_run:
        print(
            "exchange keys are not in the file: export FREQTRADE__EXCHANGE__KEY and FREQTRADE__EXCHANGE__SECRET "
            "before starting (never put them on the command line of a shared machine)"
        )
    print(f"run: freqtrade trade --strategy HeliosStrategy --config {path}")
    return 0
