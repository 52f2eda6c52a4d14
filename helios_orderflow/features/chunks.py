"""(pair, UTC day) chunks of feature building that give, bit for bit, what one replay of the whole stream gives.

A chunk that starts at midnight needs the engine exactly as the sequential replay had it there: the book, the
walls being tracked (their peaks and the volume traded into them since they appeared, however long ago), the
exhaustion buckets, CVD since the engine started, the session's volume profile and the previous session's
levels. None of these is bounded in time (a wall's peak and CVD go back to the stream's first event), so a
warm-up window before midnight cannot make them exact. Chunks therefore start from **engine checkpoints**:

1. The *pass* (``run_pass``) replays a stream once through the full engine, as ``compute_features`` does, and
   pickles the engine each time the clock is about to cross a UTC midnight: the engine has seen every event
   before the first event at or after midnight (in the recording's processing order) and none after. The file
   names the position (receive µs, run, seq) of the last event it has seen. The pass returns its feature rows
   too: it *is* the sequential replay.
2. A *chunk* (``run_chunk``) loads the checkpoint of its first midnight, replays the events after its position
   up to and including the first event at or past the next midnight (that event closes the day's last candle,
   before it is applied), and keeps the rows whose candle opens in its day. Every candle opens in exactly one
   chunk's day and is closed by an event the chunk replays, so the chunks' rows concatenated are the
   sequential frame, every value of every column (tests/test_features_parallel.py).

Chunks need a timeframe that divides a day (every candle then closes by the next midnight); others run as one
chunk per pair. Checkpoints are written by the pass under the feature cache folder, keyed by the stream's
content key, the engine settings, the timeframe and the time range, so any change there makes a new pass; a run
that finds them skips the pass and replays the days in parallel (``features/parallel.py``). A pickle runs code
when loaded: checkpoints are only read from the recording's own cache folder (or ``cache_dir``), as trusted as
the recording. See docs/research.md.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import pickle
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helios_orderflow import __version__
from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.core.symbols import symbol_to_path
from helios_orderflow.engine.candles import CandleFeatures, timeframe_us
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.features.compute import FEATURES_VERSION, candles_to_frame, engine_settings
from helios_orderflow.recording.checkpoints import CHECKPOINT_VERSION, Position, fingerprint
from helios_orderflow.recording.reader import (
    RecordingIndex,
    _chain,
    _from_receive_time,
    _load_runs,
    _stream_or_raise,
    content_key,
    index_recording,
)

DAY_US = 86_400_000_000
#: Bumped when the chunk checkpoints' layout or meaning changes: older ones are then ignored (a new pass runs).
CHUNKS_VERSION = 1
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DayMark:
    """A UTC midnight the stream's clock crossed: ``day_us`` (the midnight of the first event at or past it),
    ``position`` of the last event before it and ``file``, the engine as it stood there (in the checkpoint
    folder)."""

    day_us: int
    position: Position
    file: str


@dataclass(frozen=True)
class Job:
    """One stream's feature building: what every pass and chunk of it shares (picklable: sent to workers)."""

    #: The recording's location (a local ``Path``, or an object store's folder).
    recording: Any
    exchange: str
    symbol: str
    timeframe: str
    settings: HeliosSettings
    start_us: int | None
    end_us: int | None
    include_partial: bool


@dataclass(frozen=True)
class Chunk:
    """Candles of ``job`` opening in [``lo_us``, ``hi_us``) (None: open-ended), replayed from the checkpoint
    ``mark`` in ``folder`` (None: a fresh engine from the stream's first event)."""

    job: Job
    folder: str | None
    mark: DayMark | None
    hi_us: int | None


def splits_by_day(timeframe: str) -> bool:
    """Whether candles of ``timeframe`` never span a UTC midnight (the timeframe divides a day)."""
    return DAY_US % timeframe_us(timeframe) == 0


def checkpoint_folder(cache_folder: Path, index: RecordingIndex, job: Job) -> Path:
    """Where the pass of ``job`` keeps its midnight checkpoints: named by everything they depend on."""
    s = engine_settings(job.settings)
    payload = json.dumps(
        # the package and engine-layout versions too: a pickle of an older engine is never loaded into newer code
        {"v": CHUNKS_VERSION, "features": FEATURES_VERSION, "engine_layout": CHECKPOINT_VERSION,
         "helios": __version__, "content": content_key(index, job.exchange, job.symbol),
         "engine": fingerprint(s, job.timeframe), "start_us": job.start_us, "end_us": job.end_us},
        sort_keys=True,
    )
    key = hashlib.sha256(payload.encode()).hexdigest()[:24]
    return cache_folder / "checkpoints" / f"{job.exchange}_{symbol_to_path(job.symbol)}_{job.timeframe}_{key}"


def read_marks(folder: Path) -> list[DayMark] | None:
    """The midnights a finished pass left in ``folder`` (None when there is no finished pass there)."""
    try:
        doc = json.loads((folder / _MANIFEST).read_text())
        if doc.get("version") != CHUNKS_VERSION:
            return None
        marks = [DayMark(int(m["day_us"]), (int(m["position"][0]), str(m["position"][1]), int(m["position"][2])),
                         str(m["file"])) for m in doc["marks"]]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if not all((folder / m.file).is_file() for m in marks):
        return None
    return marks


def write_marks(folder: Path, marks: list[DayMark]) -> None:
    """Declare the pass in ``folder`` finished (written last, atomically: a killed pass leaves no manifest)."""
    doc = {"version": CHUNKS_VERSION,
           "marks": [{"day_us": m.day_us, "position": list(m.position), "file": m.file} for m in marks]}
    _atomic_write(folder / _MANIFEST, json.dumps(doc).encode())


def chunks_of(job: Job, folder: Path, marks: list[DayMark]) -> list[Chunk]:
    """The stream's chunks: the stretch before its first midnight, then one per midnight crossed."""
    his: list[int | None] = [m.day_us for m in marks]
    his.append(None)
    starts: list[DayMark | None] = [None, *marks]
    return [Chunk(job, str(folder), mark, hi) for mark, hi in zip(starts, his, strict=True)]


def positioned_events(index: RecordingIndex, exchange: str, symbol: str, start_us: int | None, end_us: int | None,
                      after: Position | None = None, chunk_rows: int = 65_536) -> Iterator[tuple[Position, Event]]:
    """One stream's events in ``read_events``' order (same files, same merge, same ``start_us``/``end_us``
    filter), each with its position (receive µs, run, seq); ``after``: only those past it (files that end
    before it are not decoded, as ``read_events_after``)."""
    files = _stream_or_raise(index, exchange, symbol)
    runs = _load_runs(index.base)
    chains = [
        _chain(i, table, (exchange, symbol), paths if after is None else _from_receive_time(paths, after[0]), runs,
               start_us, end_us, chunk_rows)
        for i, (table, paths) in enumerate(files.items())
    ]
    merged: Iterator[tuple[Any, ...]] = chains[0] if len(chains) == 1 else heapq.merge(*chains)
    for item in merged:
        pos = (item[0], item[1], item[2])
        if after is None or pos > after:
            yield pos, item[-1]


def run_pass(job: Job, folder: str | None) -> tuple[pd.DataFrame, list[DayMark]]:
    """Replay the whole stream (the sequential replay, rows and all); with ``folder``, pickle the engine there
    at each UTC midnight its clock crosses. Returns the feature frame and the midnights."""
    rows: list[CandleFeatures] = []
    engine = PairEngine(job.exchange, job.symbol, engine_settings(job.settings), job.timeframe,
                        on_candle=rows.append)
    index = index_recording(job.recording)
    marks: list[DayMark] = []
    out = Path(folder) if folder is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    next_day = -1  # the clock's next midnight (-1 before the first event: the first chunk starts fresh)
    last: Position | None = None
    on_event = engine.on_event
    for pos, ev in positioned_events(index, job.exchange, job.symbol, job.start_us, job.end_us):
        if ev.ts_us >= next_day:
            if next_day >= 0 and out is not None and last is not None:
                day = ev.ts_us // DAY_US * DAY_US
                name = f"{day}.ckpt"
                _atomic_write(out / name, _checkpoint_bytes(engine))
                marks.append(DayMark(day, last, name))
            next_day = (ev.ts_us // DAY_US + 1) * DAY_US
        on_event(ev)
        last = pos
    if job.include_partial:
        partial = engine.partial_candle()
        if partial is not None:
            rows.append(partial)
    return candles_to_frame(rows), marks


def run_chunk(chunk: Chunk) -> pd.DataFrame:
    """The rows of one chunk: its checkpoint's engine (or a fresh one) and the events after it, to the first one
    at or past ``hi_us``. Equal to the same rows of the whole replay."""
    job = chunk.job
    rows: list[CandleFeatures] = []
    mark = chunk.mark
    if mark is None or chunk.folder is None:
        engine = PairEngine(job.exchange, job.symbol, engine_settings(job.settings), job.timeframe)
        after: Position | None = None
        lo = None
    else:
        with open(Path(chunk.folder) / mark.file, "rb") as f:
            engine = pickle.load(f)  # the recording's own cache folder: see the module docstring
        if not isinstance(engine, PairEngine):
            raise TypeError(f"{chunk.folder}/{mark.file} holds a {type(engine).__name__}, not a PairEngine")
        # The engine sections are the ones the checkpoint was made with (its key); the rest of the settings
        # object may have changed since (the live warm-up does the same).
        engine.settings = engine_settings(job.settings)
        after, lo = mark.position, mark.day_us
    engine.on_candle = rows.append
    hi = chunk.hi_us
    index = index_recording(job.recording)
    events = positioned_events(index, job.exchange, job.symbol, job.start_us, job.end_us, after)
    for _, ev in events:
        engine.on_event(ev)
        if hi is not None and engine.clock_us >= hi:
            break  # it closed the day's last candle (a candle of the next day is the next chunk's)
    if hi is None and job.include_partial:
        partial = engine.partial_candle()
        if partial is not None:
            rows.append(partial)
    kept = [r for r in rows if (lo is None or r.open_time_us >= lo) and (hi is None or r.open_time_us < hi)]
    return candles_to_frame(kept)


def _checkpoint_bytes(engine: PairEngine) -> bytes:
    """The engine pickled without its candle history (up to ``flow.candle_history`` closed candles, most of a
    checkpoint's size, which no feature reads: a chunk's engine keeps only its own day's candles there)."""
    history = engine.history
    engine.history = deque(maxlen=history.maxlen)
    try:
        return pickle.dumps(engine, protocol=5)
    finally:
        engine.history = history


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers see the whole file or none


__all__ = ["DAY_US", "Chunk", "DayMark", "Job", "checkpoint_folder", "chunks_of", "positioned_events", "read_marks",
           "run_chunk", "run_pass", "splits_by_day", "write_marks"]
