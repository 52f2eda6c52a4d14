"""The ``helios`` section of a Freqtrade config, as HeliosStrategy reads it, and the run-mode logic.

The section is ``HeliosSettings`` (``settings.py``: the engine's sections plus ``strategy``, ``backtest`` and
``dashboard``). An unknown key or a bad value anywhere in the section stops start-up with a
``ConfigError`` that names the key and lists what is allowed.

Run modes (Freqtrade's ``RunMode`` values): the live feed thread runs only in ``live`` and ``dry_run``;
every other mode (``backtest``, ``hyperopt``, ``plot``, ``webserver`` chart requests, ...) reads
per-candle features from recordings instead.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helios_orderflow.core.settings import BacktestSettings, DashboardSettings, HeliosSettings, StrategySettings

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
    def recording_dir(self) -> Path | None:
        """Where the live feed records (None when recording is off)."""
        rec = self.settings.recording
        if not rec.enabled:
            return None
        return _under(self.user_data_dir, rec.path)

    @property
    def recordings_dir(self) -> Path:
        """Where recordings are read from in backtesting and the other offline modes."""
        return _under(self.user_data_dir, self.backtest.recordings)

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


def settings_table() -> list[tuple[str, str, str]]:
    """(key, default, description) of every ``helios`` key, from the settings dataclasses and their
    ``#:`` comments (docs/strategy.md's table is checked against this)."""
    import inspect

    rows: list[tuple[str, str, str]] = []
    sections: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(HeliosSettings)}  # type: ignore[misc]
    for name, cls in sections.items():
        comments = _field_comments(inspect.getsource(cls))
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            key = f"{name}.{f.name}"
            rows.append((key, _json(default), comments.get(f.name) or _UNCOMMENTED.get(key, "")))
    return rows


#: Descriptions of keys whose dataclass field carries no ``#:`` comment.
_UNCOMMENTED = {
    "recording.enabled": "Record the live feed's events (the strategy records to user_data/orderflow by default).",
    "risk.min_risk_fraction": "Lower clamp of risk_fraction.",
    "risk.max_risk_fraction": "Upper clamp of risk_fraction.",
    "feed.backoff_max_s": "Reconnect backoff cap, seconds.",
    "feed.backoff_jitter": "Fraction of each reconnect delay taken off at random.",
    "dashboard.port": "TCP port of the page (0 = any free port).",
    "dashboard.password": "Basic-auth password (with username; the environment variable wins).",
}


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _field_comments(source: str) -> dict[str, str]:
    """``#:`` comment lines above each field of a dataclass source, joined."""
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        if ":" in s and not s.startswith(("def ", "class ", "@", '"', "#", "_require")):
            name = s.split(":", 1)[0].strip()
            if name.isidentifier():
                out[name] = " ".join(pending)
        pending = []
    return out


# ---- what runs in live and dry-run: the process-wide registry of feeds -----------------------------------
# It lives here, not in strategy.py: Freqtrade's hyperopt pickles the strategy's module by value, and a lock
# or a thread among its globals would make the strategy unpicklable.


@dataclass
class LiveHandle:
    """A running feed (and dashboard) shared by every strategy instance of this process with the same key."""

    feed: Any
    dashboard: Any = None

    def stop(self) -> None:
        if self.dashboard is not None:
            stop = getattr(self.dashboard, "stop", None)
            if callable(stop):
                try:
                    stop()
                except Exception as exc:  # shutting down: report, never raise
                    log.warning("helios: stopping the dashboard failed: %s", exc)
        self.feed.stop()
        events, written = self.feed.recording_stats()
        log.info("helios: live order-flow feed stopped (%d events, %d bytes recorded to %s)", events, written,
                 self.feed.record_to or "nowhere")


class LiveRegistry:
    """Feeds by key (exchange, pairs, recording, timeframe): ``bot_start`` may run many times (FreqUI chart
    requests), a feed starts once. Thread-safe; every feed is stopped at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[tuple[Any, ...], LiveHandle] = {}

    def ensure(self, key: tuple[Any, ...], make: Callable[[], LiveHandle]) -> tuple[LiveHandle, bool]:
        """(the handle for ``key``, True when this call started its feed)."""
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None and handle.feed.running:
                return handle, False
            if handle is None:
                handle = self._handles[key] = make()
            handle.feed.start()
            return handle, True

    def get(self, key: tuple[Any, ...]) -> LiveHandle | None:
        return self._handles.get(key)

    def stop(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            handle = self._handles.pop(key, None)
        if handle is not None:
            handle.stop()

    def stop_all(self) -> None:
        """Stop every feed and dashboard (flushes recordings). Idempotent."""
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for h in handles:
            h.stop()


LIVE = LiveRegistry()
atexit.register(LIVE.stop_all)
