"""Feature building in parallel: (pair, UTC day) chunks on local worker processes or on a Dask cluster, with
results equal, bit for bit, to the sequential replay (``compute_features``).

``build_features(requests, timeframe, settings, workers=..., dask=...)`` takes (recording, exchange, symbol)
requests and returns one feature frame per request. Per stream:

- a frame in the feature cache is used as it is (``compute_features``' cache, same key);
- else, when an earlier run left midnight checkpoints for exactly this data, settings, timeframe and range
  (``features/chunks.py``), every UTC day is a chunk that restores its checkpoint and replays its own day;
- else the stream is one *pass*: the sequential replay, which also writes the checkpoints for later runs.

All passes and chunks of all requests go to one pool at once (longest first: passes, then chunks), with a
progress bar over them. ``workers``: local processes (joblib's loky, which Freqtrade installs; 0 = one per CPU
core; 1 = in this process, no pool). ``dask``: a Dask scheduler's address (``tcp://host:8786``); every worker
must see the recording and the cache folder at the same path (a shared filesystem). The design, and why a
first run only parallelises over pairs, are in docs/research.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.features.chunks import (
    Chunk,
    Job,
    checkpoint_folder,
    chunks_of,
    read_marks,
    run_chunk,
    run_pass,
    splits_by_day,
    write_marks,
)
from helios_orderflow.features.compute import (
    FEATURE_COLUMNS,
    cache_folder,
    feature_cache_path,
    read_cached,
    write_cached,
)
from helios_orderflow.recording.reader import RecordingIndex, index_recording, list_streams

Request = tuple["str | os.PathLike[str] | RecordingIndex", str, str]  # (recording, exchange, symbol)
_Task = tuple[str, Any]  # ("pass", (job, folder)) or ("chunk", chunk)


def worker_count(workers: int) -> int:
    """Local processes for ``workers`` (0 = one per CPU core)."""
    if workers < 0:
        raise HeliosError(f"workers must be 0 (one per CPU core) or more, got {workers}")
    return workers or os.cpu_count() or 1


def build_features(
    requests: Sequence[Request],
    timeframe: str = "1m",
    settings: HeliosSettings | None = None,
    *,
    workers: int = 0,
    dask: str = "",
    start_us: int | None = None,
    end_us: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    checkpoints: bool | None = None,
    progress: bool = False,
    include_partial: bool = True,
) -> list[pd.DataFrame]:
    """One feature frame per (recording, exchange, symbol) request, equal to ``compute_features`` of it.

    ``cache``: use and fill the feature cache; ``checkpoints`` (default: as ``cache``): use and write the
    midnight checkpoints that let a later run split each stream by day. Other arguments as ``compute_features``.
    Each frame's ``attrs["helios_cache"]`` is "hit", "miss" or "off"; ``attrs["helios_chunks"]`` says how it was
    built ("cache", "pass" or "N days").
    """
    s = settings or HeliosSettings()
    use_ckpt = cache if checkpoints is None else checkpoints
    frames: list[pd.DataFrame | None] = [None] * len(requests)
    tasks: list[_Task] = []
    owners: list[int] = []  # request of each task
    folders: dict[int, Path] = {}  # request -> checkpoint folder its pass writes
    cache_paths: dict[int, Path] = {}
    for i, (rec, exchange, symbol) in enumerate(requests):
        index = index_recording(rec)
        if cache:
            cache_paths[i] = feature_cache_path(index, exchange, symbol, timeframe, s, start_us, end_us,
                                                include_partial, cache_dir)
            hit = read_cached(cache_paths[i])
            if hit is not None:
                hit.attrs["helios_chunks"] = "cache"
                frames[i] = hit
                continue
        job = Job(index.base, exchange, symbol, timeframe, s, start_us, end_us, include_partial)
        base = cache_folder(index, cache_dir)
        # Checkpoints are pickles written with a rename: only in a local cache folder.
        folder = (checkpoint_folder(base, index, job)
                  if use_ckpt and splits_by_day(timeframe) and isinstance(base, Path) else None)
        marks = read_marks(folder) if folder is not None else None
        if folder is not None and marks is not None:
            for chunk in chunks_of(job, folder, marks):
                tasks.append(("chunk", chunk))
                owners.append(i)
        else:
            if folder is not None:
                folders[i] = folder
            tasks.append(("pass", (job, str(folder) if folder is not None else None)))
            owners.append(i)
    order = sorted(range(len(tasks)), key=lambda k: tasks[k][0] != "pass")  # passes (whole streams) first
    results = _run_all([tasks[k] for k in order], workers, dask, progress)
    by_task: list[Any] = [None] * len(tasks)
    for k, res in zip(order, results, strict=True):
        by_task[k] = res
    parts: dict[int, list[pd.DataFrame]] = {}
    for k, res in enumerate(by_task):
        i = owners[k]
        if tasks[k][0] == "pass":
            frame, marks = res
            if i in folders:
                write_marks(folders[i], marks)
            parts[i] = [frame]
        else:
            parts.setdefault(i, []).append(res)
    for i, pieces in parts.items():
        frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)
        frame = frame.loc[:, list(FEATURE_COLUMNS)]
        n = len(pieces)
        frame.attrs["helios_chunks"] = "pass" if tasks[owners.index(i)][0] == "pass" else f"{n} day{'s' * (n > 1)}"
        if i in cache_paths:
            write_cached(cache_paths[i], frame)
        frame.attrs["helios_cache"] = "miss" if cache else "off"
        frames[i] = frame
    assert all(f is not None for f in frames)  # every request had a cache hit or tasks
    return [f for f in frames if f is not None]


def compute_many(recording: str | os.PathLike[str] | RecordingIndex, streams: Sequence[tuple[str, str]] | None = None,
                 timeframe: str = "1m", settings: HeliosSettings | None = None,
                 **kwargs: Any) -> dict[tuple[str, str], pd.DataFrame]:
    """Frames of several streams of one recording (default: all of them), keyed by (exchange, symbol);
    keyword arguments as ``build_features``."""
    index = index_recording(recording)
    wanted = list(streams) if streams is not None else list_streams(index)
    frames = build_features([(index, e, s) for e, s in wanted], timeframe, settings, **kwargs)
    return dict(zip(wanted, frames, strict=True))


def _execute(task: _Task) -> Any:
    kind, arg = task
    if kind == "pass":
        job, folder = arg
        return run_pass(job, folder)
    chunk: Chunk = arg
    return run_chunk(chunk)


def _indexed(i: int, task: _Task) -> tuple[int, Any]:
    return i, _execute(task)


def _run_all(tasks: list[_Task], workers: int, dask: str, progress: bool) -> list[Any]:
    """Results of ``tasks``, in order, computed in this process, on local workers or on a Dask cluster."""
    from tqdm import tqdm

    results: list[Any] = [None] * len(tasks)
    if not tasks:  # every frame came from the cache: no pool, no cluster
        return results
    n = min(worker_count(workers), len(tasks))
    with tqdm(total=len(tasks), unit=" chunk", desc="features", disable=not progress,
              mininterval=0.5, leave=False) as bar:
        if dask:
            for i, res in _on_dask(tasks, dask):
                results[i] = res
                bar.update()
        elif n <= 1:
            for i, task in enumerate(tasks):
                results[i] = _execute(task)
                bar.update()
        else:
            from joblib import Parallel, delayed

            # loky: fresh processes (never forked from a process that holds threads) kept for the next call
            for i, res in Parallel(n_jobs=n, return_as="generator_unordered")(
                    delayed(_indexed)(i, t) for i, t in enumerate(tasks)):
                results[i] = res
                bar.update()
    return results


def _on_dask(tasks: list[_Task], address: str) -> Any:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise HeliosError(f"dask {address!r} needs Dask's distributed package: pip install "
                          "'helios-orderflow[research]' (or 'dask[distributed]')") from None
    try:
        client = Client(address, set_as_default=False, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise HeliosError(f"cannot reach the Dask scheduler at {address!r} ({exc}); start one with "
                          "'dask scheduler' and workers with 'dask worker ADDRESS', or drop --dask") from None
    with client, client.as_current():  # as_completed looks the client up
        futures = client.map(_indexed, range(len(tasks)), tasks, pure=False)
        for fut in as_completed(futures):
            yield fut.result()


__all__ = ["build_features", "compute_many", "worker_count"]
