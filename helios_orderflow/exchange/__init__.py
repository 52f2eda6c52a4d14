"""``helios exchange``: a local Binance-compatible REST + websocket exchange (synthetic or replayed market,
with fault injection) that the real ccxt client and a real Freqtrade dry-run connect to.

Python API: ``start_in_thread(source, **server_kwargs) -> ServerHandle`` (``.url``, ``.ccxt_config()``,
``.book(symbol)``, ``.trade_ids(symbol)``, ``.freeze()``, ``.stop()``), ``SyntheticSource``, ``ReplaySource``,
``parse_faults``; ``start_subprocess(args) -> ExchangeProcess`` for a server in its own process.
"""

from .faults import FaultPlan, parse_faults
from .process import ExchangeProcess, start_subprocess
from .replay import ReplaySource
from .server import ExchangeServer, ServerHandle, ccxt_config, ccxt_urls, start_in_thread
from .synthetic import SyntheticSource

__all__ = [
    "ExchangeProcess", "ExchangeServer", "FaultPlan", "ReplaySource", "ServerHandle", "SyntheticSource", "ccxt_config",
    "ccxt_urls", "parse_faults", "start_in_thread", "start_subprocess",
]
