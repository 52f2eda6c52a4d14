"""The faster engine (issue 19, item 5): ``compute_features`` of one 24-hour day, the engine of this tree against
the previous engine, in the same run, on the same events, with identical results.

The day: the calibrated synthetic market (``helios synth --symbols BTC/USDT --hours 24 --seed 1``: 4.26M
events, 864k depth diffs, 2.75M trades), generated once and kept as a pickle under ``~/.cache/helios/bench``
(keyed by the market's source, so a recalibrated market is generated again; about 5 minutes the first time).

The previous engine: the package as it stood at ``REFERENCE_COMMIT`` (the last commit before the faster engine),
extracted with ``git archive`` into a temporary folder (nothing in the work tree or ``.git`` changes). Each engine
runs in its own worker process that loads the events once (untimed) and then, each time the parent asks, times
``compute_features(events, "BTC/USDT", "1m")`` (the replay alone: no Parquet reading). The parent alternates the
two workers run by run, so both see the same machine. The frames must be equal bit for bit on every column the
previous engine has (columns added since are new measurements, not changes), else the benchmark fails.

Lines: ``features_24h_s`` (median wall time over ``RUNS`` runs of this tree's engine), ``features_24h_prev_s``
(the same for the previous engine), ``features_24h_speedup`` (their ratio); the same in CPU time of the worker
(``_cpu_s``, ``_prev_cpu_s``, ``_cpu_speedup``: steadier on a shared machine), every run's wall time
(``features_24h_each_run_s``), ``features_24h_runs``, ``features_24h_identical``.
``quick=True``: 15 minutes of the market, one run each. Needs a git checkout (the reference tree comes from it).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: The last commit with the previous engine (``PairEngine._arrays`` over the whole book, ``ofi.TopLevels``).
REFERENCE_COMMIT = "e01fe1c9a53c3ac30fc19fd1addee943abf1fb33"
RUNS = 3
SYMBOL = "BTC/USDT"
SEED = 1
ORIGIN_US = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC, ``helios synth``'s default start

_PACKAGE = Path(__file__).resolve().parents[2]  # .../helios_orderflow
_REPO = _PACKAGE.parent

#: Run in a worker process with the engine under test first on ``sys.path``: load the events, then one timed
#: ``compute_features`` per "run" line on stdin (wall and CPU seconds on stdout); the last frame goes to a pickle.
_WORKER = r'''
import gc, pickle, sys, time
from helios_orderflow.features.compute import compute_features
events = pickle.load(open(sys.argv[1], "rb"))
print("ready", flush=True)
frame = None
for line in sys.stdin:
    if line.strip() != "run":
        break
    frame = None
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    frame = compute_features(events, sys.argv[3], "1m")
    print(time.perf_counter() - t0, time.process_time() - c0, flush=True)
frame.to_pickle(sys.argv[2])
'''


def _market_key(hours: float) -> str:
    h = hashlib.sha256(f"{SYMBOL} {SEED} {ORIGIN_US} {hours}".encode())
    for path in sorted((_PACKAGE / "emulator").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _events_file(hours: float) -> Path:
    """The day's events as a pickle (made once per market version)."""
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "helios" / "bench"
    path = folder / f"synth-BTCUSDT-seed{SEED}-{hours:g}h-{_market_key(hours)}.pkl"
    if not path.is_file():
        from helios_orderflow.emulator.synth import synth_events

        events = list(synth_events([SYMBOL], SEED, ORIGIN_US, int(hours * 3_600_000_000)))
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(events, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    return path


def _reference_tree(dest: Path) -> Path:
    """``helios_orderflow`` at ``REFERENCE_COMMIT`` under ``dest`` (the folder to put first on sys.path)."""
    archive = subprocess.run(["git", "-C", str(_REPO), "archive", REFERENCE_COMMIT, "helios_orderflow"],
                             check=True, capture_output=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


class _Worker:
    def __init__(self, path_first: Path, events: Path, out: Path, script: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(path_first))
        self.proc = subprocess.Popen([sys.executable, str(script), str(events), str(out), SYMBOL], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.out = out

    def ready(self) -> None:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"benchmark worker failed to load the events (exit code {self.proc.wait()})")

    def run(self) -> tuple[float, float]:
        self.proc.stdin.write("run\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"benchmark worker died (exit code {self.proc.wait()})")
        wall, cpu = line.split()
        return float(wall), float(cpu)

    def frame(self) -> pd.DataFrame:
        self.proc.stdin.close()  # type: ignore[union-attr]
        if self.proc.wait() != 0:
            raise RuntimeError(f"benchmark worker failed (exit code {self.proc.returncode})")
        return pd.read_pickle(self.out)


def same_bits(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """The columns of ``old`` that ``new`` lacks or holds different bits in (NaN payloads and -0.0 included)."""
    bad = []
    for name in old.columns:
        if name not in new.columns or len(old) != len(new):
            bad.append(name)
            continue
        a = old[name].to_numpy()
        b = new[name].to_numpy()
        if a.dtype != b.dtype:
            bad.append(name)
        elif a.dtype.kind == "f":
            if not np.array_equal(a.view(np.int64), b.view(np.int64)):
                bad.append(name)
        elif not np.array_equal(a, b):
            bad.append(name)
    return bad


def run(quick: bool = False) -> dict[str, float | int | str]:
    hours = 0.25 if quick else 24.0
    runs = 1 if quick else RUNS
    events = _events_file(hours)
    tmp = Path(tempfile.mkdtemp(prefix="helios-bench-engine-"))
    try:
        script = tmp / "worker.py"
        script.write_text(_WORKER)
        ref = _reference_tree(tmp / "reference")
        workers = {"prev": _Worker(ref, events, tmp / "prev.pkl", script),
                   "new": _Worker(_REPO, events, tmp / "new.pkl", script)}
        for w in workers.values():
            w.ready()
        times: dict[str, list[tuple[float, float]]] = {"prev": [], "new": []}
        for _ in range(runs):
            for name, w in workers.items():
                times[name].append(w.run())
        frames = {name: w.frame() for name, w in workers.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bad = same_bits(frames["prev"], frames["new"])
    if bad:
        raise AssertionError(f"the engine's features differ from the previous engine's in {bad}")
    new = statistics.median(t[0] for t in times["new"])
    prev = statistics.median(t[0] for t in times["prev"])
    new_cpu = statistics.median(t[1] for t in times["new"])
    prev_cpu = statistics.median(t[1] for t in times["prev"])
    key = "features_24h" if not quick else "features_quick"
    return {
        f"{key}_s": new,
        f"{key}_prev_s": prev,
        f"{key}_speedup": prev / new,
        f"{key}_cpu_s": new_cpu,
        f"{key}_prev_cpu_s": prev_cpu,
        f"{key}_cpu_speedup": prev_cpu / new_cpu,
        f"{key}_each_run_s": " ".join(f"{name}={w:.2f}" for name in ("prev", "new") for w, _ in times[name]),
        f"{key}_runs": runs,
        f"{key}_rows": len(frames["new"]),
        f"{key}_identical": 1,
    }
