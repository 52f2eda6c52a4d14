"""``helios compact``: merge a day's small segment files into one file per stream and table.

A live writer closes a segment every ``segment_s`` (60 s): a day of one pair is ~1,440 files per table, which
costs directory walks, footers and open calls to every reader. Compaction rewrites them as one file per
(table, stream, day, writer run) with the same rows in the same order, and keeps every reader and a live
writer safe:

- **Only final files.** A file is final when its run is closed (``_runs/<id>.json`` says ``closed``, or the
  run has no record: no writer of it is alive), or when the same run already has a later file of the same
  table and stream: the writer only starts a segment after it wrote the previous one for the last time. A
  live writer's open segment (its newest file per table and stream) is never touched. Nor is the newest
  file of a killed run (nothing tells a killed run from a live one): it stays, one extra file.
- **One run per file.** Rows past a killed run's commit are filtered by the run recorded in each file
  (reader.py), and restarted runs are ordered by run id: a merged file holds one run's rows, so a day
  with restarts keeps one file per run. Rows are copied verbatim (uncommitted tails too): what a reader
  returns is unchanged.
- **Atomic.** The merged rows go to a dot-prefixed temp file (ignored by readers), fsynced; its row count is
  checked against the parts'; then it is renamed over the first part (``os.replace``: a reader opening that
  name gets the old part or the merged file, whole), and only then are the other parts unlinked, in order.
  The merged file's metadata lists its parts (``helios.parts``).
- **Readers.** ``read_events`` skips a listed file that a merged file it already opened holds (same run),
  and when a file it listed has gone, it re-lists the folder, opens the merged file that holds it and
  continues after the last row it returned from that run: a reader that started before, during or after a
  compaction returns every row exactly once. A plain Parquet reader (DuckDB, Polars) that lists the folder
  between the rename and the last unlink sees the unlinked parts' rows twice, for that instant.
- **Crash-safe and idempotent.** Killed after the rename, the leftover parts are skipped by Helios readers and
  deleted by the next compaction; compacting again merges only files that are new since.

Compaction and retention hold the same lock (retention.py); two compactions never run at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.symbols import symbol_from_path
from helios_orderflow.recording.reader import _load_runs, _require_recording, _visible, parts_of, run_of
from helios_orderflow.recording.retention import maintenance_lock
from helios_orderflow.recording.schema import (
    COMPRESSION,
    DICTIONARY_COLUMNS,
    META_EXCHANGE,
    META_PARTS,
    META_SYMBOL,
    ROW_GROUP_ROWS,
    SCHEMAS,
    TABLES,
    file_metadata,
)
from helios_orderflow.recording.store import RemotePath, is_url
from helios_orderflow.recording.writer import _fsync_dir, _write_durably

log = logging.getLogger(__name__)


@dataclass
class CompactStats:
    """What one compaction did: ``merged_files`` files written, holding ``parts_merged`` former files
    (``rows`` rows); ``leftovers_removed``: parts a killed compaction had left; ``bytes_before``/``after``:
    sizes of the files involved."""

    merged_files: int = 0
    parts_merged: int = 0
    rows: int = 0
    leftovers_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass
class _File:
    path: Path
    run: str
    parts: tuple[str, ...]  # names whose rows it holds (itself, or its helios.parts)
    rows: int
    size: int


def compact_recording(
    root: str | os.PathLike[str] | RemotePath,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    date: str | None = None,
) -> CompactStats:
    """Merge the final segment files of every (table, stream, day, run) of the recording at ``root`` into
    one (see the module doc). ``exchange``/``symbol``/``date`` (``YYYY-MM-DD``) restrict it. Waits for a
    retention pass or another compaction holding the recording's lock."""
    if isinstance(root, RemotePath) or is_url(os.fspath(root)):
        raise HeliosError(
            f"helios compact needs a local folder, not '{root}': it relies on an atomic rename and a lock, which "
            "object stores lack. Compact a local copy before uploading it, or record with a longer "
            "recording.segment_s (fewer, larger files)"
        )
    base = _require_recording(root)
    stats = CompactStats()
    with maintenance_lock(base, wait=True):
        runs = _load_runs(base)
        for table in TABLES:
            for chain in _chains(base, table, exchange, symbol):
                _compact_chain(table, chain, runs, date, stats)
    return stats


def _chains(base: Path, table: str, exchange: str | None, symbol: str | None) -> Iterator[list[Path]]:
    """Each stream's files of ``table`` in read order (dates, then names)."""
    tdir = base / table
    if not tdir.is_dir():
        return
    for edir in sorted(tdir.glob("exchange=*")):
        if exchange is not None and edir.name != f"exchange={exchange}":
            continue
        for sdir in sorted(edir.glob("symbol=*")):
            if symbol is not None and symbol_from_path(sdir.name[len("symbol="):]) != symbol:
                continue
            files: list[Path] = []
            for ddir in sorted(d for d in sdir.glob("date=*") if d.is_dir()):
                files.extend(sorted(p for p in ddir.iterdir() if p.suffix == ".parquet" and _visible(p.name)))
            if files:
                yield files


def _compact_chain(table: str, paths: list[Path], runs: dict[str, int | None], date: str | None,
                   stats: CompactStats) -> None:
    files: list[_File] = []
    for path in paths:
        try:
            md = pq.read_metadata(path)
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowException) as e:
            raise HeliosError(f"cannot read '{path}': {e}; move it out of the recording, then compact again") from e
        run = run_of(md)
        files.append(_File(path, run, parts_of(md) or (path.name,), md.num_rows, size))
    # Leftovers of a compaction killed between its rename and its unlinks: parts a merged file of the same
    # run holds (readers already skip them).
    held = {(f.path.parent, f.run, name) for f in files if len(f.parts) > 1 for name in f.parts[1:]}
    kept = []
    for f in files:
        if (f.path.parent, f.run, f.path.name) in held:
            f.path.unlink(missing_ok=True)
            stats.leftovers_removed += 1
        else:
            kept.append(f)
    # The newest file of each live run is its writer's open segment, or may be: never touch it.
    last_of_run: dict[str, Path] = {}
    for f in kept:
        last_of_run[f.run] = f.path
    groups: dict[tuple[Path, str], list[_File]] = {}
    for f in kept:
        live = f.run in runs and runs[f.run] is not None  # a record that is not closed: maybe alive
        if live and last_of_run[f.run] == f.path:
            continue
        if date is not None and f.path.parent.name != f"date={date}":
            continue
        groups.setdefault((f.path.parent, f.run), []).append(f)
    for (ddir, _), group in groups.items():
        if len(group) >= 2:
            _merge(table, ddir, group, stats)


def _merge(table: str, ddir: Path, group: list[_File], stats: CompactStats) -> None:
    first = group[0]
    schema = SCHEMAS[table]
    parts = [name for f in group for name in f.parts]
    md0 = pq.read_metadata(first.path).metadata or {}
    # The partition path names the stream too (a file another tool wrote may lack Helios's metadata).
    exchange = md0.get(META_EXCHANGE, ddir.parent.parent.name.removeprefix("exchange=").encode()).decode()
    symbol = md0.get(META_SYMBOL, symbol_from_path(ddir.parent.name.removeprefix("symbol=")).encode()).decode()
    meta = file_metadata(table, exchange, symbol, first.run)
    meta[META_PARTS] = json.dumps(parts).encode()
    out_schema = schema.with_metadata(meta)
    expected = sum(f.rows for f in group)
    tmp = ddir / f".{first.path.stem}.compact.{os.getpid()}.tmp"

    def write(fh: BinaryIO) -> None:
        dictionary = DICTIONARY_COLUMNS[table] or False
        with pq.ParquetWriter(fh, out_schema, compression=COMPRESSION, use_dictionary=dictionary) as pw:
            pending: list[pa.RecordBatch] = []
            n = 0
            for batch in _batches(group, schema):
                pending.append(batch)
                n += batch.num_rows
                while n >= ROW_GROUP_ROWS:  # full row groups, as the writer makes them
                    t = pa.Table.from_batches(pending, schema=schema)
                    pw.write_table(t.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                    rest = t.slice(ROW_GROUP_ROWS)
                    pending, n = rest.to_batches(), rest.num_rows
            if n:
                pw.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=ROW_GROUP_ROWS)

    size = _write_durably(tmp, write)
    try:
        got = pq.read_metadata(tmp).num_rows
        if got != expected:
            raise HeliosError(f"compacting {ddir}: the merged file has {got} rows, its parts {expected}; "
                              "nothing was changed (report this)")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The order that keeps readers whole: the merged file replaces the first part in one rename, then the
    # other parts go (a reader skips them from the moment it has opened the merged file; see the module doc).
    os.replace(tmp, first.path)
    _fsync_dir(ddir)
    for f in group[1:]:
        with contextlib.suppress(FileNotFoundError):
            f.path.unlink()
    _fsync_dir(ddir)
    stats.merged_files += 1
    stats.parts_merged += len(group)
    stats.rows += expected
    stats.bytes_before += sum(f.size for f in group)
    stats.bytes_after += size
    log.debug("compacted %d files of %s into %s (%d rows)", len(group), ddir, first.path.name, expected)


def _batches(group: list[_File], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for f in group:
        pf = pq.ParquetFile(f.path)
        for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=schema.names, use_threads=False):
            yield pa.RecordBatch.from_arrays(
                [batch.column(i).cast(field.type) for i, field in enumerate(schema)], schema=schema)
