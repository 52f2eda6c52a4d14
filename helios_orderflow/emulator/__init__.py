"""``helios exchange``: a local REST + websocket exchange in one venue's public protocol (``dialects/``:
binance, bybit, okx, gate, kucoin), over a synthetic or replayed market with fault injection, that the real
ccxt client and a real Freqtrade dry-run connect to.

Python API: ``start_in_thread(source, venue=..., **server_kwargs) -> ServerHandle`` (``.url``, ``.ccxt_config()``,
``.book(symbol)``, ``.trade_ids(symbol)``, ``.freeze()``, ``.stop()``), ``SyntheticSource``, ``ReplaySource``,
``parse_faults``; ``start_subprocess(args) -> ExchangeProcess`` for a server in its own process.

May import: core, book, recording, importers.
"""

from helios_orderflow.emulator.dialects import VENUES
from helios_orderflow.emulator.faults import FaultPlan, parse_faults
from helios_orderflow.emulator.process import ExchangeProcess, start_subprocess
from helios_orderflow.emulator.replay import ReplaySource
from helios_orderflow.emulator.server import ExchangeServer, ServerHandle, ccxt_config, ccxt_urls, start_in_thread
from helios_orderflow.emulator.synthetic import SyntheticSource

__all__ = [
    "VENUES",
    "ExchangeProcess",
    "ExchangeServer",
    "FaultPlan",
    "ReplaySource",
    "ServerHandle",
    "SyntheticSource",
    "ccxt_config",
    "ccxt_urls",
    "parse_faults",
    "start_in_thread",
    "start_subprocess",
]
