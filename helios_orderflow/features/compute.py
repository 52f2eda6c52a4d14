"""The per-candle feature table: the function backtesting calls, and its cache.

``compute_features(source, symbol, timeframe)`` replays events through a ``PairEngine`` and returns one row
per closed candle, shaped like Freqtrade's dataframe: a ``date`` column (candle open time, UTC, tz-aware) and
the columns of ``FEATURE_COLUMNS`` (definitions and units in docs/signals.md). Because the engine closes a
candle with open time ``t`` before it applies the first event with ``ts_us >= t + tf``, every value of that
row comes from events with ``ts_us < t + tf``: no look-ahead. The last row is the candle still open when the
events end (``include_partial``), with its values so far. A recording cut at time T therefore gives, for every
candle that closes before T, the same row as the whole recording (the events are the same up to T; only events
arriving late by more than the distance from the candle's close to T could differ, and feeds are late by well
under a second).

The live engine (SharedState) and this function run the same code on the same events, so live and backtest
features are equal. The heatmap is switched off here: no feature reads it.

Cache: for a recording, the frame is stored as Parquet under ``<recording>/.cache/features/`` (or
``cache_dir``), keyed by the recording's content key (file names, sizes, mtimes), the exchange, symbol,
timeframe, time range and every engine setting, so any change to the data or settings recomputes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.symbols import symbol_to_path
from helios_orderflow.engine.candles import CANDLE_FIELDS, CandleFeatures
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.recording.reader import (
    RecordingIndex,
    content_key,
    index_recording,
    list_streams,
    read_events,
)
from helios_orderflow.recording.store import Location, RemotePath, local_cache_dir

#: Bump when the meaning of any feature changes: old cache files are then ignored.
FEATURES_VERSION = 2  # 2: had_book and the session volume profile columns

#: The feature table's columns, in order (``date`` first).
FEATURE_COLUMNS: tuple[str, ...] = ("date", *(f for f in CANDLE_FIELDS if f != "open_time_us"))
#: The integer columns of the table (counts and flags); every other column but ``date`` is float64.
INT_COLUMNS: tuple[str, ...] = ("trades", "absorption_bull", "absorption_bear", "exhaustion_up", "exhaustion_down",
                                "book_ok", "had_book")


def candles_to_frame(candles: list[CandleFeatures]) -> pd.DataFrame:
    """Closed candles as a Freqtrade-style dataframe (``date`` = open time, UTC)."""
    data: dict[str, Any] = {}
    if candles:
        cols = list(zip(*(dataclasses.astuple(c) for c in candles), strict=True))
    else:
        cols = [() for _ in CANDLE_FIELDS]
    for name, values in zip(CANDLE_FIELDS, cols, strict=True):
        if name == "open_time_us":
            data["date"] = pd.to_datetime(np.asarray(values, dtype=np.int64), unit="us", utc=True)
        elif name in INT_COLUMNS:
            data[name] = np.asarray(values, dtype=np.int64)
        else:
            data[name] = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(data, columns=list(FEATURE_COLUMNS))


def engine_settings(settings: HeliosSettings | None) -> HeliosSettings:
    """The settings ``compute_features`` runs the engine with (heatmap off: no feature reads it)."""
    s = settings or HeliosSettings()
    return dataclasses.replace(s, heatmap=dataclasses.replace(s.heatmap, enabled=False))


def compute_features(
    events_or_recording: Iterable[Event] | str | os.PathLike[str] | RecordingIndex | RemotePath,
    symbol: str,
    timeframe: str = "1m",
    settings: HeliosSettings | None = None,
    *,
    exchange: str | None = None,
    start_us: int | None = None,
    end_us: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    include_partial: bool = True,
) -> pd.DataFrame:
    """Per-candle features of ``symbol`` (ccxt unified) from a recording directory or an iterable of events.

    ``exchange``: ccxt id; for a recording it may be omitted when only one exchange has ``symbol``.
    ``start_us``/``end_us``: keep events with ``start_us <= ts_us < end_us`` (exchange time, µs).
    ``cache``: use and fill the Parquet cache (recordings only). ``progress``: a progress bar on stderr.
    ``include_partial``: add, as the last row, the candle still open when the events end (its values cover
    the events up to the end, so per-candle deltas sum to the stream's CVD; like every row it uses no event
    past its own close).
    The frame's ``attrs["helios_cache"]`` is ``"hit"``, ``"miss"`` or ``"off"``.
    """
    if isinstance(events_or_recording, (str, os.PathLike, RecordingIndex, RemotePath)):
        # One walk of the recording's folders serves the stream lookup, the cache key and the read.
        return _from_recording(index_recording(events_or_recording), symbol, timeframe, settings, exchange, start_us,
                               end_us,
                               cache, cache_dir, progress, include_partial)
    events: Iterable[Event] = events_or_recording
    if exchange is not None or start_us is not None or end_us is not None:
        events = (
            ev for ev in events
            if (exchange is None or ev.exchange == exchange)
            and (start_us is None or ev.ts_us >= start_us) and (end_us is None or ev.ts_us < end_us)
        )
    frame = _run(events, exchange or "", symbol, timeframe, settings, progress, include_partial)
    frame.attrs["helios_cache"] = "off"
    return frame


def _run(events: Iterable[Event], exchange: str, symbol: str, timeframe: str, settings: HeliosSettings | None,
         progress: bool, include_partial: bool) -> pd.DataFrame:
    """The frame of ``symbol``'s events among ``events`` (other symbols are skipped)."""
    rows: list[CandleFeatures] = []
    engine = PairEngine(exchange, symbol, engine_settings(settings), timeframe, on_candle=rows.append)
    on_event = engine.on_event
    if progress:
        from tqdm import tqdm

        events = tqdm(events, unit=" ev", unit_scale=True, mininterval=0.5, desc=f"features {symbol}", leave=False)
    try:
        for ev in events:  # the replay's loop: the symbol test inline, no generator between (4M events a day)
            if ev.symbol == symbol:
                on_event(ev)
    finally:
        if progress:
            events.close()  # type: ignore[attr-defined]
    if include_partial:
        last = engine.partial_candle()
        if last is not None:
            rows.append(last)
    return candles_to_frame(rows)


def resolve_stream(root: Location | RecordingIndex, symbol: str | None, exchange: str | None) -> tuple[str, str]:
    """(exchange, symbol) of the one stream of ``root`` matching the given filters, or a HeliosError."""
    index = index_recording(root)
    root = index.base
    streams = list_streams(index)
    match = [s for s in streams if (exchange is None or s[0] == exchange) and (symbol is None or s[1] == symbol)]
    if len(match) == 1:
        return match[0]
    have = ", ".join(f"{e} {s}" for e, s in streams) or "none"
    if not match:
        raise HeliosError(
            f"recording '{root}' has no stream for exchange={exchange or 'any'} symbol={symbol or 'any'} "
            f"(it has: {have}); record with 'helios record' or import with 'helios import'"
        )
    raise HeliosError(f"recording '{root}' has several matching streams ({have}); choose one with --exchange/--symbol")


def cache_key(content_key: str, exchange: str, symbol: str, timeframe: str, settings: HeliosSettings,
              start_us: int | None, end_us: int | None, include_partial: bool = True) -> str:
    """Hash of everything a feature frame depends on."""
    s = engine_settings(settings)
    relevant = {name: dataclasses.asdict(getattr(s, name))
                for name in ("heatmap", "flow", "walls", "absorption", "exhaustion", "volume_profile")}
    payload = json.dumps(
        {"v": FEATURES_VERSION, "content": content_key, "exchange": exchange, "symbol": symbol,
         "timeframe": timeframe, "start_us": start_us, "end_us": end_us, "partial": include_partial,
         "settings": relevant},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def feature_cache_path(index: RecordingIndex, exchange: str, symbol: str, timeframe: str,
                       settings: HeliosSettings | None, start_us: int | None, end_us: int | None,
                       include_partial: bool, cache_dir: str | os.PathLike[str] | None) -> Path:
    """Where the frame of one stream is cached (``cache_dir``, or ``<recording>/.cache/features``)."""
    key = cache_key(content_key(index, exchange, symbol), exchange, symbol, timeframe,
                    settings or HeliosSettings(), start_us, end_us, include_partial)
    return cache_folder(index, cache_dir) / f"{exchange}_{symbol_to_path(symbol)}_{timeframe}_{key[:24]}.parquet"


def cache_folder(index: RecordingIndex, cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if isinstance(index.base, RemotePath):  # an object store's recording: a local cache (recording/store.py)
        return local_cache_dir(index.base) / "features"
    return index.base / ".cache" / "features"


def read_cached(path: Path) -> pd.DataFrame | None:
    """The cached frame at ``path`` (``attrs["helios_cache"] = "hit"``), or None (absent or damaged)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError):  # a damaged cache file is recomputed, never trusted
        return None
    if tuple(frame.columns) != FEATURE_COLUMNS:
        return None
    frame.attrs["helios_cache"] = "hit"
    frame.attrs["helios_cache_path"] = str(path)
    return frame


def write_cached(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)  # readers see the whole file or none
    frame.attrs["helios_cache_path"] = str(path)


def _from_recording(index: RecordingIndex, symbol: str, timeframe: str, settings: HeliosSettings | None,
                    exchange: str | None, start_us: int | None, end_us: int | None, cache: bool,
                    cache_dir: str | os.PathLike[str] | None, progress: bool, include_partial: bool) -> pd.DataFrame:
    exchange, symbol = resolve_stream(index, symbol, exchange)
    path: Path | None = None
    if cache:
        path = feature_cache_path(index, exchange, symbol, timeframe, settings, start_us, end_us, include_partial,
                                  cache_dir)
        cached = read_cached(path)
        if cached is not None:
            return cached
    events = read_events(index, exchange=exchange, symbol=symbol, start_us=start_us, end_us=end_us)
    frame = _run(events, exchange, symbol, timeframe, settings, progress, include_partial)
    if path is not None:
        write_cached(path, frame)
    frame.attrs["helios_cache"] = "miss" if cache else "off"
    return frame
