"""Kept import path for the local exchange's Python API (the emulator lives in ``helios_orderflow.emulator``;
"exchange" elsewhere in Helios means the venue)."""

from helios_orderflow.emulator import (
    VENUES,
    ExchangeProcess,
    ExchangeServer,
    FaultPlan,
    ReplaySource,
    ServerHandle,
    SyntheticSource,
    ccxt_config,
    ccxt_urls,
    parse_faults,
    start_in_thread,
    start_subprocess,
)

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
