"""The ``helios`` section of a Freqtrade config, as HeliosStrategy reads it, and the run-mode logic.

The section is ``HeliosSettings`` (``settings.py``: the engine's sections plus ``strategy``, ``backtest`` and
``dashboard``). An unknown key or a bad value anywhere in the section stops start-up with a
``ConfigError`` that names the key and lists what is allowed.

Run modes (Freqtrade's ``RunMode`` values): the live feed thread runs only in ``live`` and ``dry_run``;
every other mode (``backtest``, ``hyperopt``, ``plot``, ``webserver`` chart requests, ...) reads
per-candle features from recordings instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helios_orderflow.core.settings import BacktestSettings, DashboardSettings, HeliosSettings, StrategySettings
from helios_orderflow.recording.store import Location, is_url, open_url

__all__ = ["BacktestSettings", "DashboardSettings", "HeliosConfig", "StrategySettings", "load_config", "read_section"]

log = logging.getLogger(__name__)

#: Freqtrade run modes in which the strategy starts the live feed thread.
LIVE_MODES = frozenset({"live", "dry_run"})


@dataclass(frozen=True, slots=True)
class HeliosConfig:
    """Everything HeliosStrategy takes from the Freqtrade config."""

    settings: HeliosSettings = field(default_factory=HeliosSettings)
    #: Freqtrade's run mode value ("live", "dry_run", "backtest", "hyperopt", "plot", "webserver", ...).
    runmode: str = "other"
    #: ccxt id of the exchange Freqtrade trades on, and its trading mode ("spot", "futures", "margin").
    exchange: str = "binance"
    trading_mode: str = "spot"
    timeframe: str = "1m"
    pairs: tuple[str, ...] = ()
    user_data_dir: Path = Path("user_data")
    #: ccxt constructor config for the feed (Freqtrade's ``exchange.ccxt_config`` merged with
    #: ``ccxt_async_config``; API keys are never passed: the feed reads public data only).
    ccxt_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def strategy(self) -> StrategySettings:
        return self.settings.strategy

    @property
    def backtest(self) -> BacktestSettings:
        return self.settings.backtest

    @property
    def dashboard(self) -> DashboardSettings:
        return self.settings.dashboard

    @property
    def live(self) -> bool:
        """True in live and dry-run: the feed thread runs and callbacks read SharedState."""
        return self.runmode in LIVE_MODES

    @property
    def recording_dir(self) -> Location | None:
        """Where the live feed records (None when recording is off): a folder, or an object store's (s3://)."""
        rec = self.settings.recording
        if not rec.enabled:
            return None
        return self._place(rec.path)

    @property
    def recordings_dir(self) -> Location:
        """Where recordings are read from in backtesting and the other offline modes."""
        return self._place(self.backtest.recordings)

    def _place(self, path: str) -> Location:
        if is_url(path):  # an object store (recording/store.py)
            return open_url(path, endpoint_url=self.settings.recording.endpoint_url)
        return _under(self.user_data_dir, path)

    @property
    def recorded_exchange(self) -> str:
        return self.backtest.exchange or self.exchange


def _under(base: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def read_section(
    section: Mapping[str, Any] | None,
) -> tuple[HeliosSettings, StrategySettings, BacktestSettings, DashboardSettings]:
    """The typed settings of a ``helios`` section (ConfigError on an unknown key or a bad value), with the
    strategy's own sections split out for convenience."""
    settings = HeliosSettings.from_dict(section)  # type: ignore[arg-type]
    return settings, settings.strategy, settings.backtest, settings.dashboard


def _runmode_value(runmode: Any) -> str:
    if runmode is None:
        return "other"
    return str(getattr(runmode, "value", runmode))


def load_config(config: Mapping[str, Any], runmode: Any = None) -> HeliosConfig:
    """HeliosConfig from a Freqtrade config dict (as Freqtrade hands it to the strategy).

    ``runmode``: Freqtrade's RunMode (or its value); default the config's ``runmode``.
    """
    settings = read_section(config.get("helios"))[0]
    exchange_cfg = config.get("exchange") or {}
    ccxt_cfg: dict[str, Any] = {}
    for key in ("ccxt_config", "ccxt_async_config"):
        _deep_merge(ccxt_cfg, dict(exchange_cfg.get(key) or {}))
    trading_mode = str(config.get("trading_mode") or "spot")
    if trading_mode == "futures":
        options = ccxt_cfg.setdefault("options", {})
        options.setdefault("defaultType", "swap")
    user_data = config.get("user_data_dir") or "user_data"
    return HeliosConfig(
        settings=settings,
        runmode=_runmode_value(runmode if runmode is not None else config.get("runmode")),
        exchange=str(exchange_cfg.get("name") or "binance").lower(),
        trading_mode=trading_mode,
        timeframe=str(config.get("timeframe") or "1m"),
        pairs=tuple(exchange_cfg.get("pair_whitelist") or ()),
        user_data_dir=Path(user_data),
        ccxt_config=ccxt_cfg,
    )


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v
