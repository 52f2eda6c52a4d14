"""``--memdiag``: what a soak process's memory is made of, minute by minute, to tell a leak (Python objects
that keep growing) from an allocator that holds freed memory (glibc heap or arenas, pymalloc arenas).

A daemon thread in the process writes, every ``every_s`` seconds, one JSON line to
``memdiag-<name>.jsonl`` in the run directory:

- ``rss_kb``, ``rss_anon_kb`` (``/proc/self/status``) and the resident kB of the mappings by kind
  (``/proc/self/smaps``: ``heap`` = glibc's main heap, ``anon`` = anonymous mappings (thread arenas, large
  blocks, pymalloc arenas, Arrow), ``file``, ``stack``);
- glibc's ``mallinfo2`` (``arena`` bytes from sbrk and arenas, ``fordblks`` free inside them, ``uordblks``
  in use, ``hblkhd`` in mmapped blocks, ``keepcost``) and the number of malloc arenas (``malloc_info``);
- the interpreter: ``sys.getallocatedblocks()``, pymalloc's arena counts and bytes (from
  ``sys._debugmallocstats``), gc-tracked objects by type (the 40 most numerous), asyncio tasks;
- pyarrow's allocated bytes when it is loaded;
- with tracing on: ``tracemalloc``'s traced and own memory.

With ``trace_frames`` > 0, ``tracemalloc`` starts at wall time ``trace_at``, a baseline snapshot is taken
``baseline_after_s`` later, and every ``every_s * 5`` after that the growth since the baseline is written to
``memdiag-<name>-growth.txt`` (top allocations by traceback, newest last): what was allocated after the
baseline and is still alive. Tracing slows allocation and costs memory of its own: a traced run's RSS rule is
not a measurement, its per-minute lines are (``traced_kb`` and ``tracemalloc_own_kb`` say how much). At the
soak's own load (10 pairs at 10x) ten frames of tracing starved the feed (events fell from 3,400/s to 600/s,
keepalives timed out): trace a lighter run, or read the untraced counts (objects by type and by shape).

The feed process starts it in-process (``start``); Freqtrade runs under it as
``python -m helios_orderflow.devtools.soak.memdiag --out DIR --name bot [...] -- freqtrade ARGS``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import gc
import json
import os
import re
import runpy
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

#: Objects by type: the most numerous this many are written each minute.
TOP_TYPES = 40
#: Growth report: this many tracebacks.
TOP_TRACES = 40
#: Every this many samples, the holders of the list/tuple/dict shape that grew most since the last look.
HOLDERS_EVERY = 5


_MALLINFO2 = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
              "keepcost")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def mallinfo2() -> dict[str, int]:
    """glibc's ``mallinfo2`` (all arenas), bytes; empty off glibc (or before 2.33)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _Mallinfo2
    mi = libc.mallinfo2()
    return {name: int(getattr(mi, name)) for name in _MALLINFO2}


def malloc_arenas() -> dict[str, int]:
    """glibc's ``malloc_info``: the number of arenas and the bytes their heaps hold (``<heap nr=...>``)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_info"):
        return {}
    with tempfile.NamedTemporaryFile("r", suffix=".xml") as tmp:
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        fp = libc.fopen(tmp.name.encode(), b"w")
        if not fp:
            return {}
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        xml = tmp.read()
    heaps = re.findall(r'<heap nr="(\d+)">(.*?)</heap>', xml, re.S)
    out = {"malloc_arenas": len(heaps)}
    for nr, body in heaps:
        cur = re.search(r'<system type="current" size="(\d+)"/>', body)
        free = re.search(r'<total type="rest" count="\d+" size="(\d+)"/>', body)
        fast = re.search(r'<total type="fast" count="\d+" size="(\d+)"/>', body)
        out[f"arena{nr}_kb"] = int(cur.group(1)) // 1024 if cur else -1
        out[f"arena{nr}_free_kb"] = ((int(free.group(1)) if free else 0) + (int(fast.group(1)) if fast else 0)) // 1024
    return out


def smaps_kinds() -> dict[str, int]:
    """Resident kB by kind of mapping (``/proc/self/smaps``)."""
    kinds: Counter[str] = Counter()
    kind = "anon"
    with contextlib.suppress(OSError), open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split()
                path = parts[5] if len(parts) > 5 else ""
                kind = ("heap" if path == "[heap]" else "stack" if path.startswith("[stack")
                        else "anon" if not path or path.startswith("[anon") else
                        "other" if path.startswith("[") else "file")
            elif first == "Rss:":
                kinds[kind] += int(line.split()[1])
    return {f"smaps_{k}_kb": v for k, v in sorted(kinds.items())}


def status_kb() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
                out[{"VmRSS": "rss_kb", "RssAnon": "rss_anon_kb", "RssFile": "rss_file_kb", "VmHWM": "hwm_kb",
                     "Threads": "threads"}[key]] = int(line.split()[1])
    return out


_STDERR_LOCK = threading.Lock()


def pymalloc_stats() -> dict[str, int]:
    """pymalloc's arena counts and bytes, parsed from ``sys._debugmallocstats`` (which writes to fd 2: it is
    pointed at a file for the call; another thread's stderr in that instant lands there too). Empty while
    tracemalloc traces (its hooks hide pymalloc from that report)."""
    if not hasattr(sys, "_debugmallocstats") or tracemalloc.is_tracing():
        return {}
    with _STDERR_LOCK, tempfile.TemporaryFile("w+") as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    out: dict[str, int] = {}
    for key, pat in (("pymalloc_arenas_current", r"# arenas allocated current\s*=\s*([\d,]+)"),
                     ("pymalloc_arenas_highwater", r"# arenas highwater mark\s*=\s*([\d,]+)"),
                     ("pymalloc_arenas_total", r"# arenas allocated total\s*=\s*([\d,]+)"),
                     ("pymalloc_allocated_blocks_bytes", r"# bytes in allocated blocks\s*=\s*([\d,]+)"),
                     ("pymalloc_free_pool_bytes", r"# bytes in available blocks\s*=\s*([\d,]+)"),
                     ("pymalloc_free_pools_bytes", r"\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)"),
                     ("pymalloc_total_bytes", r"Total\s*=\s*([\d,]+)")):
        m = re.search(pat, text)
        if m:
            out[key] = int(m.group(1).replace(",", ""))
    return out


def _size(x: Any) -> int:
    with contextlib.suppress(TypeError):
        return len(x)
    return 0


def object_types() -> tuple[int, dict[str, int], dict[str, int]]:
    """gc-tracked objects: how many, the ``TOP_TYPES`` most numerous types, and the sizes of what Helios and
    ccxt keep that is invisible to gc (dicts of floats are not tracked): book levels of the engines and the
    feed's book differs, ccxt's books, trade caches, clients and their futures and subscriptions."""
    objs = gc.get_objects()
    counts = Counter(type(o).__qualname__ for o in objs)
    n = len(objs)
    kept: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    ccxt_base = sys.modules.get("ccxt.base.exchange")
    exchange_cls = getattr(ccxt_base, "BaseExchange", None)
    for o in objs:
        name = type(o).__name__
        if name in ("list", "tuple", "dict"):
            shapes[_shape(o) or name] += 1
        elif name == "PairEngine":
            kept["engines"] += 1
            kept["engine_levels"] += len(o.book.bids.levels) + len(o.book.asks.levels)
            kept["engine_history"] += len(o.history)
            if o.walls is not None:
                kept["engine_wall_tracks"] += len(o.walls.tracks)
        elif name == "BookDiffer":
            kept["differ_levels"] += _size(getattr(o, "bids", ())) + _size(getattr(o, "asks", ()))
        elif exchange_cls is not None and isinstance(o, exchange_cls):
            kept["ccxt_exchanges"] += 1
            for ob in list((getattr(o, "orderbooks", None) or {}).values()):
                kept["ccxt_book_levels"] += _size(ob.get("bids", ())) + _size(ob.get("asks", ()))
                kept["ccxt_book_cache"] += _size(getattr(ob, "cache", ()))
            for tr in list((getattr(o, "trades", None) or {}).values()):
                kept["ccxt_trades"] += _size(tr) if not isinstance(tr, dict) else sum(map(_size, tr.values()))
            for by_tf in list((getattr(o, "ohlcvs", None) or {}).values()):
                kept["ccxt_ohlcv"] += sum(map(_size, by_tf.values())) if isinstance(by_tf, dict) else _size(by_tf)
            kept["ccxt_tickers"] += _size(getattr(o, "tickers", ())) + _size(getattr(o, "bidsasks", ()))
            clients = getattr(o, "clients", None) or {}
            kept["ccxt_clients"] += len(clients)
            for c in list(clients.values()):
                kept["ccxt_futures"] += _size(getattr(c, "futures", ()))
                kept["ccxt_subscriptions"] += _size(getattr(c, "subscriptions", ()))
                kept["ccxt_rejections"] += _size(getattr(c, "rejections", ()))
        elif name == "TradeTape":
            kept["tape_trades"] += len(o)
    del objs
    kept.update({f"shape {k}": v for k, v in shapes.most_common(TOP_TYPES)})
    return n, dict(counts.most_common(TOP_TYPES)), dict(kept)


def _shape(o: Any) -> str | None:
    name = type(o).__name__
    if name not in ("list", "tuple", "dict"):
        return None
    n_items = len(o)
    try:  # another thread may change it meanwhile
        first = (next(iter(o.values()), None) if name == "dict" else o[0]) if n_items else None
    except (IndexError, RuntimeError):
        first = None
    bucket = n_items if n_items < 8 else 8 if n_items < 64 else 64 if n_items < 1024 else 1024
    return f"{name}[{bucket}{'+' if bucket >= 8 else ''}]<{type(first).__name__}>"


def _describe(o: Any) -> str:
    name = type(o).__qualname__
    if type(o).__name__ == "frame":
        return f"frame {o.f_code.co_name} ({Path(o.f_code.co_filename).name}:{o.f_lineno})"
    if isinstance(o, dict):
        return f"dict keys {sorted(map(str, list(o)[:4]))}"
    return f"{type(o).__module__}.{name}"


def holders(shape: str, samples: int = 20, depth: int = 4) -> list[str]:
    """Who holds objects of ``shape`` (see ``object_types``): for up to ``samples`` of them, the chain of
    referrers ``depth`` levels up (one pass over the gc's objects per level), counted by chain. An object whose
    chain ends in itself or in a frame of an exception's traceback is often cyclic garbage waiting for a full
    collection (``gc_collections`` says when the last one ran)."""
    objs = gc.get_objects()
    targets = [o for o in objs if _shape(o) == shape][:samples]
    chains: dict[int, list[str]] = {id(t): [] for t in targets}
    level: dict[int, list[int]] = {id(t): [id(t)] for t in targets}  # object id at this level -> target ids
    for _ in range(depth):
        found: dict[int, list[int]] = {}
        done: set[int] = set()  # targets whose holder at this level is known
        for o in objs:
            for r in gc.get_referents(o):
                tids = [t for t in level.get(id(r), ()) if t not in done]
                if tids and o is not objs:
                    found.setdefault(id(o), []).extend(tids)
                    done.update(tids)
                    for t in tids:
                        chains[t].append(_describe(o))
        if not found:
            break
        level = found
    del objs, targets
    return [f"{n} x {' <- '.join(chain) or '(nothing)'}" for chain, n in
            Counter(tuple(c) for c in chains.values()).most_common(5)]


#: Set (to anything) by ``soak --memdiag-garbage``: every ``HOLDERS_EVERY`` samples, ``garbage_census``.
GARBAGE_ENV = "HELIOS_MEMDIAG_GARBAGE"


def garbage_census(top: int = 15) -> dict[str, Any]:
    """What a full collection finds unreachable now (cyclic garbage), by type, with the frames in it by code
    (a frame kept by a traceback names the function that raised or awaited) and, for the garbage's most
    numerous list/tuple/dict shape, which types in the garbage refer to it. The garbage is kept for a moment
    in ``gc.garbage`` (``gc.DEBUG_SAVEALL``), then freed by a second collection. It is a full collection
    itself: a run with it collects its oldest generation every few minutes, which changes what it measures."""
    old = gc.get_debug()
    gc.set_debug(old | gc.DEBUG_SAVEALL)
    try:
        found = gc.collect()
        garbage = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(old)
    types = Counter(type(o).__qualname__ for o in garbage)
    frames = Counter(f"{o.f_code.co_name} ({Path(o.f_code.co_filename).name})" for o in garbage
                     if type(o).__name__ == "frame")
    shapes = Counter(sh for o in garbage if (sh := _shape(o)) is not None)
    shape, _n = shapes.most_common(1)[0] if shapes else ("", 0)
    ids = {id(o) for o in garbage if shape and _shape(o) == shape}
    referrers: Counter[str] = Counter()
    for o in garbage:
        if any(id(r) in ids for r in gc.get_referents(o)):
            referrers[_describe(o)] += 1
    del garbage
    gc.collect()
    return {"unreachable": found, "types": dict(types.most_common(top)), "frames": dict(frames.most_common(top)),
            "shape": shape, "shapes": dict(shapes.most_common(5)), "shape_referrers": dict(referrers.most_common(8))}


class GcPauses:
    """The collector's pauses by generation, through ``gc.callbacks``: the longest and the total since the last
    ``take()``, in ms (a collection holds the GIL: every thread of the process waits that long)."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._lock = threading.Lock()
        self._max = [0.0, 0.0, 0.0]
        self._total = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1e3
        g = info["generation"]
        with self._lock:
            self._max[g] = max(self._max[g], ms)
            self._total[g] += ms

    def take(self) -> dict[str, list[float]]:
        with self._lock:
            out = {"gc_pause_max_ms": [round(x, 1) for x in self._max],
                   "gc_pause_total_ms": [round(x, 1) for x in self._total]}
            self._max, self._total = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        return out


def sample(t0: float) -> dict[str, Any]:
    """One line of the record (see the module doc)."""
    row: dict[str, Any] = {"t": round(time.time(), 1), "s": round(time.time() - t0, 1)}
    row.update(status_kb())
    row.update(smaps_kinds())
    for k, v in mallinfo2().items():
        if k in ("ordblks", "hblks"):  # counts
            row[f"mi_{k}"] = v
        elif k not in ("usmblks", "smblks", "fsmblks"):  # unused by glibc, or fastbins (in fordblks)
            row[f"mi_{k}_kb"] = v // 1024
    row.update(malloc_arenas())
    row["py_allocated_blocks"] = sys.getallocatedblocks()
    row.update(pymalloc_stats())
    n, types, kept = object_types()
    row["gc_objects"] = n
    row.update(kept)
    row["types"] = types
    row["asyncio_tasks"] = types.get("Task", 0)
    row["gc_collections"] = [g["collections"] for g in gc.get_stats()]
    row["gc_count"] = list(gc.get_count())
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        with contextlib.suppress(Exception):
            row["arrow_allocated_kb"] = pa.total_allocated_bytes() // 1024
    if tracemalloc.is_tracing():
        cur, _ = tracemalloc.get_traced_memory()
        row["traced_kb"] = cur // 1024
        row["tracemalloc_own_kb"] = tracemalloc.get_tracemalloc_memory() // 1024
    return row


def growth_text(base: tracemalloc.Snapshot, now: tracemalloc.Snapshot, elapsed_s: float) -> str:
    """The allocations alive now that were not at the baseline, by traceback (biggest growth first)."""
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    base, now = base.filter_traces(filters), now.filter_traces(filters)
    lines = [f"growth over {elapsed_s:.0f} s since the baseline snapshot"]
    for key in ("lineno", "traceback"):
        stats = now.compare_to(base, key)
        stats.sort(key=lambda s: s.size_diff, reverse=True)
        total = sum(s.size_diff for s in stats)
        lines.append(f"\n=== by {key}: net {total / 1024:+,.0f} KiB ===")
        for s in stats[:TOP_TRACES]:
            lines.append(f"{s.size_diff / 1024:+10,.1f} KiB {s.count_diff:+9,d} blocks "
                         f"(now {s.size / 1024:,.1f} KiB in {s.count:,d})")
            frames = s.traceback.format(most_recent_first=True) if key == "traceback" else \
                s.traceback.format()
            lines.extend("      " + f.strip() for f in frames[: (12 if key == "traceback" else 1) * 2])
    return "\n".join(lines) + "\n"


class MemDiag(threading.Thread):
    """The sampling thread (see the module doc). ``stop()`` takes a last sample (and growth report)."""

    def __init__(self, out_dir: Path, name: str, *, every_s: float = 60.0, trace_at: float | None = None,
                 trace_frames: int = 0, baseline_after_s: float = 120.0) -> None:
        super().__init__(name=f"memdiag-{name}", daemon=True)
        self.path = out_dir / f"memdiag-{name}.jsonl"
        self.growth_path = out_dir / f"memdiag-{name}-growth.txt"
        self.every_s = every_s
        self.trace_at = trace_at if trace_frames > 0 else None
        self.trace_frames = trace_frames
        self.baseline_after_s = baseline_after_s
        self.t0 = time.time()
        self._done = threading.Event()
        self._base: tracemalloc.Snapshot | None = None
        self._base_t = 0.0
        self._samples = 0
        self._shapes_then: dict[str, int] = {}
        self._pauses = GcPauses()
        gc.callbacks.append(self._pauses)

    def run(self) -> None:
        next_sample = time.time()
        next_growth = float("inf")
        while not self._done.is_set():
            now = time.time()
            if self.trace_at is not None and not tracemalloc.is_tracing() and now >= self.trace_at:
                tracemalloc.start(self.trace_frames)
                next_growth = now + self.baseline_after_s
            if now >= next_growth:
                self._growth()
                next_growth = time.time() + self.every_s * 5
            if now >= next_sample:
                self._write()
                next_sample += self.every_s
            self._done.wait(max(0.05, min(next_sample, next_growth,
                                          self.trace_at if self.trace_at and not tracemalloc.is_tracing()
                                          else float("inf")) - time.time()))

    def _write(self) -> None:
        try:
            row = sample(self.t0)
            row.update(self._pauses.take())  # since the last sample, before this sample's own collections
            self._samples += 1
            if self._samples % HOLDERS_EVERY == 0:  # who holds the shape that grew most since the last look
                shapes = {k: v for k, v in row.items() if k.startswith("shape ")}
                if self._shapes_then:
                    grown = max(shapes, key=lambda k: shapes[k] - self._shapes_then.get(k, 0))
                    row["holders_of"] = grown
                    row["holders"] = holders(grown.removeprefix("shape "))
                self._shapes_then = shapes
                if os.environ.get(GARBAGE_ENV):
                    row["garbage"] = garbage_census()
        except Exception as exc:  # a diagnostic never stops the process it watches
            row = {"t": time.time(), "error": repr(exc)}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def _growth(self) -> None:
        if not tracemalloc.is_tracing():
            return
        snap = tracemalloc.take_snapshot()
        if self._base is None:
            self._base, self._base_t = snap, time.time()
            return
        text = growth_text(self._base, snap, time.time() - self._base_t)
        tmp = self.growth_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.growth_path)

    def stop(self) -> None:
        """A last sample and growth report, then the thread ends."""
        self._done.set()
        self.join(timeout=120)
        self._write()
        self._growth()


def start(out_dir: Path, name: str, **kw: Any) -> MemDiag:
    diag = MemDiag(out_dir, name, **kw)
    diag.start()
    return diag


#: What ``summary`` prints per minute (when present).
SUMMARY_KEYS = ("rss_kb", "rss_anon_kb", "smaps_heap_kb", "smaps_anon_kb", "mi_arena_kb", "mi_uordblks_kb",
                "mi_fordblks_kb", "mi_hblkhd_kb", "malloc_arenas", "py_allocated_blocks", "pymalloc_arenas_current",
                "pymalloc_allocated_blocks_bytes", "gc_objects", "traced_kb", "tracemalloc_own_kb",
                "arrow_allocated_kb", "engine_levels", "differ_levels", "ccxt_book_levels", "ccxt_trades",
                "ccxt_clients", "ccxt_futures", "ccxt_subscriptions", "asyncio_tasks", "threads")


def summary(path: Path, since: int = 5) -> str:
    """A ``memdiag-*.jsonl`` as a table (one row a minute), then each figure's change from row ``since`` to
    the last and the object types whose count changed most."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "error" not in r]
    if not rows:
        return f"{path}: no samples\n"
    keys = [k for k in SUMMARY_KEYS if any(k in r for r in rows)]
    out = [f"{path.name}: {len(rows)} samples", "s " + " ".join(keys)]
    for r in rows:
        out.append(f"{r['s']:.0f} " + " ".join(str(r.get(k, "")) for k in keys))
    a, b = rows[min(since, len(rows) - 1)], rows[-1]
    minutes = max(1e-9, (b["s"] - a["s"]) / 60)
    out.append(f"\nchange from {a['s']:.0f} s to {b['s']:.0f} s (per minute):")
    for k in keys:
        if isinstance(a.get(k), int) and isinstance(b.get(k), int):
            out.append(f"  {k}: {b[k] - a[k]:+,d} ({(b[k] - a[k]) / minutes:+,.1f}/min)")
    ta, tb = a.get("types", {}), b.get("types", {})
    moved = sorted(set(ta) | set(tb), key=lambda t: -abs(tb.get(t, 0) - ta.get(t, 0)))
    out.append("object types (count then -> now):")
    out.extend(f"  {t}: {ta.get(t, 0):,d} -> {tb.get(t, 0):,d}" for t in moved[:15])
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run a module (``-- freqtrade trade ...``) with the sampling thread beside it, or print the summary of
    the ``memdiag-*.jsonl`` in a run directory (``--summary DIR``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--summary"]:
        for path in sorted(Path(argv[1]).glob("memdiag-*.jsonl")):
            print(summary(path))
        return
    split = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m helios_orderflow.devtools.soak.memdiag")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--every-s", type=float, default=60.0)
    p.add_argument("--trace-at", type=float, default=None)
    p.add_argument("--trace-frames", type=int, default=0)
    args = p.parse_args(argv[:split])
    module, rest = argv[split + 1], argv[split + 2:]
    start(args.out, args.name, every_s=args.every_s, trace_at=args.trace_at, trace_frames=args.trace_frames)
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
