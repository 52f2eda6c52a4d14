"""Order-flow engine benchmarks (``make bench``): replay throughput, per-event cost, the per-candle features of
a 24-hour day (computed and from the cache), and the memory one pair's state takes over that day.

Inputs:
- the real Binance BTCUSDT stream bundled with the package (about 11 minutes: 6.5k depth diffs of ~46 levels,
  19.9k trades, 73k bookTicker), parsed once by the binance-raw importer;
- a 24-hour BTCUSDT-like day built on the fly by looping that stream (depth snapshot, diffs and trades; no
  bookTicker) with update ids and times shifted so each loop continues the previous one: about 864k diffs and
  2.6M trades. Each loop starts from the real REST snapshot again, so the book stays realistic.

Figures (one core; the machine may be shared, so they are noisy):
- ``replay_events_per_s_real``: full engine (heatmap on) on the real stream, events per second.
- ``event_p50_us``/``event_p99_us``/``event_max_us``: wall time of single ``on_event`` calls on the real stream.
- ``replay_events_per_s``: full engine on the 24 h day; ``pair_state_mb_start/mid/end``: deep size of that
  engine (book, heatmap ring, walls, windows, candle history) at 10 %, 50 % and 100 % of the day.
- ``features_24h_looped_s``: ``compute_features`` of the day from events in memory (the engine's own cost;
  ``features_24h_s`` in ``engine_24h.py`` is the same on the calibrated synthetic day, against the previous engine);
  ``features_24h_recording_s``: the same from a Helios recording (Parquet reading included; cache off);
  ``features_cached_s``: the same call answered from the feature cache.
``quick=True`` uses 15 minutes of the day instead of 24 hours.
"""

from __future__ import annotations

import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from types import FunctionType, MethodType, ModuleType
from typing import Any

import numpy as np

from helios_orderflow.core.events import BookDelta, BookSnapshot, Event, Trade
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.features.compute import compute_features

DAY_US = 86_400_000_000


def _real_stream() -> list[Event]:
    from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
    from helios_orderflow.importers.binance_raw import iter_events

    return list(iter_events(BINANCE_BTCUSDT_FILES, progress=False))


def synthetic_day(base: list[Event], span_us: int = DAY_US) -> Iterator[Event]:
    """``base`` (one symbol's snapshot, diffs and trades) looped for ``span_us`` of event time with ids and
    times shifted per loop; bookTicker events are left out. Yields new events; nothing is stored.
    Every loop starts with the (shifted) REST snapshot, so the book is in sync throughout."""
    core = [e for e in base if type(e) in (BookDelta, Trade)]
    # Each loop starts with the snapshot: the diffs the real capture buffered before it are then dropped as
    # stale or straddle it, exactly as in the original stream, and the ids of loop k+1 continue loop k's.
    # (Its receive time becomes the first diff's: recordings are written in receive order.)
    snap = next(e for e in base if type(e) is BookSnapshot)
    core.insert(0, replace(snap, local_ts_us=min(e.local_ts_us for e in core)))
    deltas = [e for e in core if type(e) is BookDelta]
    first_ts = min(e.ts_us for e in core)
    period = max(e.ts_us for e in core) - first_ts + 100_000
    id_step = deltas[-1].update_id - deltas[0].first_update_id + 1
    end = first_ts + span_us
    loop = 0
    while True:
        dt = loop * period
        di = loop * id_step
        for e in core:
            ts = e.ts_us + dt
            if ts >= end:
                return
            if type(e) is Trade:
                yield Trade(e.exchange, e.symbol, ts, e.local_ts_us + dt, e.price, e.amount, e.side, e.trade_id)
            elif type(e) is BookDelta:
                yield BookDelta(e.exchange, e.symbol, ts, e.local_ts_us + dt, e.first_update_id + di,
                                e.update_id + di, e.prev_update_id, e.bids, e.asks)
            elif type(e) is BookSnapshot:
                yield BookSnapshot(e.exchange, e.symbol, ts, e.local_ts_us + dt, e.update_id + di, e.bids, e.asks)
        loop += 1


def deep_size(obj: Any) -> int:
    """Bytes reachable from ``obj`` (``sys.getsizeof`` walk, which for a NumPy array that owns its data
    includes the data; a view's data is counted at its base), each object once. Classes, modules and
    functions are not followed."""
    seen: set[int] = set()
    stack = [obj]
    total = 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, (type, ModuleType, FunctionType, MethodType)):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            total += sys.getsizeof(o)
            if o.base is not None:
                stack.append(o.base)
            continue
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset, deque)):
            stack.extend(o)
        elif isinstance(o, (str, bytes, int, float, bool)) or o is None:
            continue
        else:
            if hasattr(o, "__dict__"):
                stack.append(vars(o))
            for cls in type(o).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(o, name):
                        stack.append(getattr(o, name))
    return total


def _replay_real(base: list[Event]) -> dict[str, float]:
    symbol = base[0].symbol
    rates = []
    for _ in range(3):
        engine = PairEngine(base[0].exchange, symbol)
        on = engine.on_event
        t0 = time.perf_counter()
        for ev in base:
            on(ev)
        rates.append(len(base) / (time.perf_counter() - t0))
    engine = PairEngine(base[0].exchange, symbol)
    on = engine.on_event
    clock = time.perf_counter_ns
    cost = np.empty(len(base), dtype=np.int64)
    for i, ev in enumerate(base):
        t0 = clock()
        on(ev)
        cost[i] = clock() - t0
    return {
        "replay_events_per_s_real": statistics.median(rates),
        "event_p50_us": float(np.percentile(cost, 50)) / 1000,
        "event_p99_us": float(np.percentile(cost, 99)) / 1000,
        "event_max_us": float(cost.max()) / 1000,
    }


def _replay_day(base: list[Event], span_us: int) -> dict[str, float]:
    engine = PairEngine(base[0].exchange, base[0].symbol)
    on = engine.on_event
    marks = {int(span_us * 0.1): "start", int(span_us * 0.5): "mid"}
    start_ts = min(e.ts_us for e in base if type(e) is not BookSnapshot)
    pending = sorted(marks)
    out: dict[str, float] = {}
    n = 0
    busy = 0.0
    t0 = time.perf_counter()
    for ev in synthetic_day(base, span_us):
        if pending and ev.ts_us - start_ts >= pending[0]:
            busy += time.perf_counter() - t0
            out[f"pair_state_mb_{marks[pending.pop(0)]}"] = deep_size(engine) / 1e6
            t0 = time.perf_counter()
        on(ev)
        n += 1
    busy += time.perf_counter() - t0
    out["pair_state_mb_end"] = deep_size(engine) / 1e6
    out["replay_events_per_s"] = n / busy
    out["day_events"] = n
    out["day_candles"] = engine.candles_closed
    return out


def _features(base: list[Event], span_us: int, quick: bool) -> dict[str, float]:
    from helios_orderflow.recording import RecordingWriter

    symbol = base[0].symbol
    out: dict[str, float] = {}
    gc.collect()
    t0 = time.perf_counter()
    frame = compute_features(synthetic_day(base, span_us), symbol, "1m")
    out["features_24h_looped_s" if not quick else "features_quick_looped_s"] = time.perf_counter() - t0
    out["features_rows"] = len(frame)
    root = tempfile.mkdtemp(prefix="helios-bench-")
    try:
        t0 = time.perf_counter()
        writer = RecordingWriter(root, flush_by_time=False)
        writer.write_many(synthetic_day(base, span_us))
        writer.close()
        out["recording_write_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        from_rec = compute_features(root, symbol, "1m")
        out["features_24h_recording_s" if not quick else "features_quick_recording_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cached = compute_features(root, symbol, "1m")
        out["features_cached_s"] = time.perf_counter() - t0
        if cached.attrs.get("helios_cache") != "hit" or not cached.equals(from_rec) or not from_rec.equals(frame):
            raise AssertionError("cached, recorded and in-memory features differ")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def run(quick: bool = False) -> dict[str, float | int | str]:
    base = _real_stream()
    span_us = 15 * 60_000_000 if quick else DAY_US
    results: dict[str, float | int | str] = {"engine_real_events": len(base)}
    results.update(_replay_real(base))
    results.update(_replay_day(base, span_us))
    results.update(_features(base, span_us, quick))
    return results
