"""The soak's memory diagnostic (``--memdiag``): what it records and how it names what grew."""

from __future__ import annotations

import json
import time
from pathlib import Path

from helios_orderflow.devtools.soak import memdiag


def _grow(keep: list[list[bytes]]) -> None:
    keep.append([bytes(200) + bytes([i % 256]) for i in range(2000)])  # ~0.5 MB held per call


def test_each_sample_splits_rss_into_allocator_and_interpreter_figures(tmp_path: Path) -> None:
    diag = memdiag.MemDiag(tmp_path, "t")
    diag._write()
    row = json.loads((tmp_path / "memdiag-t.jsonl").read_text().splitlines()[0])
    assert row["rss_kb"] > 0 and row["rss_anon_kb"] > 0
    assert row["mi_arena_kb"] > 0 and row["mi_uordblks_kb"] > 0  # glibc's mallinfo2
    assert row["pymalloc_arenas_current"] >= 1  # parsed from sys._debugmallocstats
    assert row["py_allocated_blocks"] > 0 and row["gc_objects"] > 0
    assert sum(row["types"].values()) <= row["gc_objects"]


def test_the_growth_report_names_the_line_that_holds_the_new_memory(tmp_path: Path) -> None:
    keep: list[list[bytes]] = []
    diag = memdiag.MemDiag(tmp_path, "g", every_s=3600, trace_at=time.time(), trace_frames=4)
    import tracemalloc

    tracemalloc.start(4)
    try:
        diag._growth()  # the baseline
        for _ in range(4):
            _grow(keep)
        diag._growth()
    finally:
        tracemalloc.stop()
    text = (tmp_path / "memdiag-g-growth.txt").read_text()
    by_line = text.split("=== by lineno")[1].split("=== by traceback")[0]
    first = by_line.splitlines()[1]
    assert float(first.split("KiB")[0].replace(",", "")) > 1500  # 4 x 2000 blocks of ~250 bytes
    assert "test_soak_memdiag.py" in by_line.splitlines()[2]
    assert len(keep) == 4


def test_the_summary_reports_change_per_minute_between_samples(tmp_path: Path) -> None:
    rows = [{"s": 60.0 * i, "rss_kb": 1000 + 100 * i, "gc_objects": 50, "types": {"dict": 10 + i}} for i in range(8)]
    (tmp_path / "memdiag-x.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = memdiag.summary(tmp_path / "memdiag-x.jsonl", since=5)
    assert "rss_kb: +200 (+100.0/min)" in text
    assert "dict: 15 -> 17" in text


class _LevelKeeper:
    def __init__(self) -> None:
        self.levels = [[float(i), 1.0] for i in range(50)]


def test_holders_follow_referrers_from_a_shape_up_to_the_object_that_keeps_it() -> None:
    keeper = _LevelKeeper()
    chains = memdiag.holders("list[2]<float>", samples=5, depth=2)
    assert any("_LevelKeeper" in c.split(" <- ")[1] for c in chains if " <- " in c), chains
    assert len(keeper.levels) == 50


class _Book:
    """A parsed book kept by a failed call's frame: the cycle a failed future makes."""

    def __init__(self) -> None:
        self.bids = [[100.0 - i, 1.0] for i in range(7)]


def _parse_and_fail(book: _Book) -> Exception:
    levels = book.bids  # a local of the frame the traceback keeps
    try:
        raise ValueError(f"{len(levels)} levels")
    except ValueError as exc:
        exc.kept = exc  # type: ignore[attr-defined]  # as a future keeps its exception: a cycle
        return exc


def test_the_garbage_census_names_the_frames_and_the_shape_of_cyclic_garbage_then_frees_it() -> None:
    import gc
    import weakref

    gc.collect()
    book = _Book()
    alive = weakref.ref(book)
    for _ in range(3):
        _parse_and_fail(book)
    del book
    census = memdiag.garbage_census()
    assert census["frames"].get("_parse_and_fail (test_soak_memdiag.py)") == 3
    assert census["types"]["ValueError"] == 3 and census["types"]["traceback"] >= 3
    assert census["shape"] == "list[2]<float>" and census["shapes"]["list[2]<float>"] == 7
    assert census["shape_referrers"] == {"builtins.list": 1}  # the book's side, itself garbage
    assert alive() is None and gc.garbage == []  # freed, not kept


def test_gc_pauses_are_kept_by_generation_and_reset_when_taken() -> None:
    import gc

    pauses = memdiag.GcPauses()
    gc.callbacks.append(pauses)
    try:
        keep = [[float(i), 1.0] for i in range(200_000)]  # a heap that takes a measurable full collection
        gc.collect(2)
    finally:
        gc.callbacks.remove(pauses)
    taken = pauses.take()
    assert taken["gc_pause_max_ms"][2] > 0 and taken["gc_pause_total_ms"][2] >= taken["gc_pause_max_ms"][2]
    assert pauses.take() == {"gc_pause_max_ms": [0.0, 0.0, 0.0], "gc_pause_total_ms": [0.0, 0.0, 0.0]}
    assert len(keep) == 200_000
