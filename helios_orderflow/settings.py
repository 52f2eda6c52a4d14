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
class HeliosSettings:
    """The ``helios`` section of the Freqtrade config."""

    recording: RecordingSettings = field(default_factory=RecordingSettings)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> HeliosSettings:
        return from_mapping(cls, data, "helios")
