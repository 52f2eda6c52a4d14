"""Every tunable of Helios, with its default and unit, in one place.

Settings are read from the ``helios`` section of the Freqtrade config (see ``HeliosSettings.from_dict``);
unknown keys and bad values stop start-up with a message naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """How recordings are written (see README, "Recording format")."""

    enabled: bool = True
    #: Where recordings go, relative to Freqtrade's user_data dir when not absolute.
    path: str = "orderflow"
    #: Buffered events are written out at least this often (seconds of wall-clock time); a crash
    #: loses at most this much.
    flush_interval_s: float = 5.0
    #: A file is closed and a new one started after this many seconds of data.
    segment_s: float = 60.0
    #: ... or after this many rows, whichever comes first (bounds memory and file size).
    segment_rows: int = 1_000_000


T = TypeVar("T")


def from_mapping(cls: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build settings dataclass ``cls`` from a dict, rejecting unknown keys and wrong types."""
    data = dict(data or {})
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)} in {where}; allowed: {', '.join(sorted(names))}"
        )
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        value = data[f.name]
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = from_mapping(hint, value, f"{where}.{f.name}")  # type: ignore[arg-type]
            continue
        values[f.name] = _coerce(value, hint, f"{where}.{f.name}")
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The live feed thread (helios_orderflow/feed.py): which streams, book depth, reconnects."""

    #: Book levels per side the feed compares and publishes (ccxt's Binance default, and the depth of
    #: the REST snapshot ccxt starts from). A level outside the best this many is reported removed.
    book_depth: int = 1000
    #: Watch trades (the engine's CVD, VWAP, absorption need them).
    trades: bool = True
    #: Watch the venue's best bid/offer stream (Binance bookTicker) where the exchange has one.
    bbo: bool = True
    #: Use ccxt's multi-symbol watchers (watch_trades_for_symbols, watch_bids_asks) where the exchange
    #: has them; books are always one subscription per pair (see feed.py for why).
    multi_symbol: bool = True
    #: Reconnect backoff: first delay, cap (seconds) and jitter (fraction of the delay taken off at random).
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.5
    #: stop() waits at most this long for the thread (seconds); it must stay under 5.
    stop_timeout_s: float = 4.0

    def __post_init__(self) -> None:
        problems = [
            (1 <= self.book_depth <= 5000, "helios.feed.book_depth must be in 1..5000"),
            (0 < self.backoff_initial_s <= self.backoff_max_s,
             "helios.feed needs 0 < backoff_initial_s <= backoff_max_s"),
            (0 <= self.backoff_jitter <= 1, "helios.feed.backoff_jitter must be in 0..1"),
            (0 < self.stop_timeout_s <= 5, "helios.feed.stop_timeout_s must be in (0, 5]"),
        ]
        for ok, message in problems:
            if not ok:
                raise ConfigError(f"{message}, got {self}")


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """When a pair's live book counts as healthy (helios_orderflow/health.py)."""

    #: A pair with no book update for more than this many seconds is stale (unhealthy).
    stale_after_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.stale_after_s > 0:
            raise ConfigError(f"helios.health.stale_after_s must be > 0, got {self.stale_after_s}")


@dataclass(frozen=True, slots=True)
class HeliosSettings:
    """The ``helios`` section of the Freqtrade config."""

    recording: RecordingSettings = field(default_factory=RecordingSettings)
    feed: FeedSettings = field(default_factory=FeedSettings)
    health: HealthSettings = field(default_factory=HealthSettings)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HeliosSettings:
        return from_mapping(cls, data, "helios")
