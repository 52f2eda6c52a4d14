"""Parallel feature building (``make bench``; issue 19, docs/research.md): 2 local workers against 1 on a
3-day, 3-pair synthetic recording.

The recording (``write_three_days``): the synthetic market of BTC/USDT, ETH/USDT and SOL/USDT written twice,
each time ``minutes`` before to ``minutes`` after a UTC midnight (2024-01-02 and 2024-01-03 00:00), so it
touches three UTC days and its books run live across two midnights. The pool of worker processes is started
and has imported Helios before timing (a constant second or two, paid once per process that builds features).

Figures (one run each; the machine has 2 cores and may be shared):
- ``features_parallel_1worker_s`` / ``features_parallel_2workers_s``: every pair's frame from the day chunks,
  the midnight checkpoints of an earlier run in place (feature cache off): the (pair, day) path.
- ``features_parallel_speedup``: their ratio.
- ``features_parallel_first_run_speedup``: the same ratio for a first run (no checkpoints yet: one sequential
  pass per pair, pairs in parallel, which writes the checkpoints).
- ``features_parallel_sequential_s``: ``compute_features`` of the three pairs one after the other (the old path).
- ``features_parallel_cpu_speedup``: the day chunks on 2 workers again, each timed in CPU seconds: their sum over
  the busier worker's. The wall-clock speedup two free cores would give; on a machine shared with other work it
  tells apart what the code costs from what the neighbours take (Linux's autogroup scheduling shares the CPU
  between sessions, not processes: a second worker of ours only speeds up while the other sessions are idle).
``quick=True``: 3 minutes either side of each midnight instead of 30.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAIRS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
#: The two midnights the recording straddles (it touches 2024-01-01, -02 and -03).
MIDNIGHTS = (datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 3, tzinfo=UTC))


def write_three_days(out: Path, minutes: float, seed: int = 0) -> Path:
    """The 3-day recording described in the module docstring, at ``out``."""
    from helios_orderflow.emulator.synth import write_synthetic

    span_us = int(minutes * 60_000_000)
    for k, midnight in enumerate(MIDNIGHTS):
        start_us = int(midnight.timestamp() * 1_000_000) - span_us
        write_synthetic(str(out), list(PAIRS), seed + k, start_us, 2 * span_us)
    return out


def _cpu_timed(chunk: Any) -> tuple[int, float]:
    """(worker pid, CPU seconds) of one day chunk."""
    from helios_orderflow.features.chunks import run_chunk

    c0 = time.process_time()
    run_chunk(chunk)
    return os.getpid(), time.process_time() - c0


def _cpu_speedup(requests: list[tuple[Path, str, str]], cache_dir: Path) -> float:
    from joblib import Parallel, delayed

    from helios_orderflow.core.settings import HeliosSettings
    from helios_orderflow.features.chunks import Job, checkpoint_folder, chunks_of, read_marks
    from helios_orderflow.recording.reader import index_recording

    chunks = []
    for rec, exchange, pair in requests:
        index = index_recording(rec)
        job = Job(index.base, exchange, pair, "1m", HeliosSettings(), None, None, True)
        folder = checkpoint_folder(cache_dir, index, job)
        marks = read_marks(folder)
        assert marks is not None, "the first runs left no checkpoints"
        chunks += chunks_of(job, folder, marks)
    per_worker: dict[int, float] = {}
    for pid, cpu in Parallel(n_jobs=2)(delayed(_cpu_timed)(c) for c in chunks):
        per_worker[pid] = per_worker.get(pid, 0.0) + cpu
    return sum(per_worker.values()) / max(per_worker.values())


def run(quick: bool = False) -> dict[str, float]:
    from joblib import Parallel, delayed

    from helios_orderflow.features.compute import compute_features
    from helios_orderflow.features.parallel import build_features, worker_count

    tmp = Path(tempfile.mkdtemp(prefix="helios-bench-parallel-"))
    try:
        rec = write_three_days(tmp / "rec", 3 if quick else 30)
        requests = [(rec, "binance", p) for p in PAIRS]
        # Start the pool and import Helios in its processes before timing.
        Parallel(n_jobs=2)(delayed(worker_count)(i) for i in range(8))

        def timed(workers: int, cache_dir: Path) -> float:
            t0 = time.perf_counter()
            build_features(requests, "1m", workers=workers, cache=False, checkpoints=True, cache_dir=cache_dir)
            return time.perf_counter() - t0

        t0 = time.perf_counter()
        for p in PAIRS:
            compute_features(rec, p, "1m", cache=False)
        sequential = time.perf_counter() - t0
        first_1 = timed(1, tmp / "c1")
        first_2 = timed(2, tmp / "c2")
        days_1 = timed(1, tmp / "c1")
        days_2 = timed(2, tmp / "c1")
        return {
            "features_parallel_sequential_s": sequential,
            "features_parallel_1worker_s": days_1,
            "features_parallel_2workers_s": days_2,
            "features_parallel_speedup": days_1 / days_2,
            "features_parallel_first_run_speedup": first_1 / first_2,
            "features_parallel_cpu_speedup": _cpu_speedup(requests, tmp / "c1"),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
