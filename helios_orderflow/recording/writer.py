"""RecordingWriter: events in, a Helios recording (Parquet, see schema.py and docs/recording.md) out.

Durability, the point of this module:

- Only complete files are ever visible. Every file is written to a dot-prefixed temp file in its final
  directory, fsynced, then renamed into place (a first version is hard-linked, so an existing name is
  never overwritten; later versions of a file this writer created replace it with ``os.replace``).
- The writer keeps the open segment of each (table, exchange, symbol) in memory and, at least every
  ``flush_interval_s`` of wall-clock time (checked in ``write``; also call ``flush_if_due`` from a timer
  when events may stop), rewrites each changed segment's file whole. Then it commits: it rewrites
  ``ROOT/_runs/<run id>.json`` with the highest ``seq`` whose events are all on disk. A SIGKILL therefore
  loses at most the events of the last flush interval, and the reader (reader.py) drops rows past the
  commit, so what it returns is always an exact prefix of what was written, even when the kill landed
  between two file renames of one flush.
- A segment is closed (its file final, a new file started) after ``segment_s`` of local time,
  ``segment_rows`` rows, or at a UTC date change. Memory is bounded by the open segments.
- A writer never touches files it did not create: a restarted writer starts a new run (new run id, seq
  from 0) and new files; a name collision picks a new name (``<stem>-1.parquet``, ...).
- No wall-clock time goes into file content, metadata or names: writing the same events with
  ``flush_by_time=False`` gives byte-identical files, whatever the intermediate ``flush()`` calls.

Events must be written in receive order: ``local_ts_us`` never decreases (else HeliosError), so that
(local_timestamp, seq) reproduces the written order. Not thread-safe: one thread writes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, FeedGap, Trade
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.recording.schema import (
    COMPRESSION,
    DICTIONARY_COLUMNS,
    FORMAT_VERSION,
    ROW_GROUP_ROWS,
    RUNS_DIR,
    SCHEMAS,
    TABLES,
    date_of_day,
    day_of_us,
    file_metadata,
    file_stem,
    partition_dir,
)
from helios_orderflow.recording.store import Location, RemotePath, location

#: Buffered rows are turned into Arrow columns every this many rows: Python lists cost ~10x the memory.
_SEAL_ROWS = 65_536

#: Arrow memory for segments comes from the C library's malloc, not pyarrow's default (mimalloc). Every
#: flush rebuilds each open segment and encodes it again, so a live recorder frees and reallocates buffers
#: of growing sizes all day; mimalloc kept the pages of earlier rounds resident (under the feed benchmark
#: its arena's RSS grew 9.7 -> 14.7 MB in 10 minutes while Arrow's live bytes stayed within 3-8 MB), where
#: glibc hands blocks of 128 KiB and more back to the system when freed (the feed pins that threshold, see
#: malloc.py): the same run with this pool was flat. Only this module's allocations; the process default
#: pool (Freqtrade's and pandas' Arrow use) is left alone.
_POOL = pa.system_memory_pool()


class _Segment:
    """The rows of one future file: one (table, exchange, symbol, date), a bounded span of time."""

    __slots__ = ("batches", "cols", "day", "dir", "dirty", "first_lts", "first_seq", "key", "path", "pending",
                 "rows", "size", "table")

    def __init__(self, root: Location, key: tuple[str, str, str], day: int, first_lts: int, first_seq: int) -> None:
        table, exchange, symbol = key
        self.key = key
        self.table = table
        self.day = day
        self.first_lts = first_lts
        self.first_seq = first_seq
        self.dir = partition_dir(root, table, exchange, symbol, date_of_day(day))
        self.cols: list[list[Any]] = [[] for _ in SCHEMAS[table].names]
        self.batches: list[pa.RecordBatch] = []
        self.pending = 0  # rows in cols, not yet in batches
        self.rows = 0
        self.dirty = False  # rows added since the file was last written
        self.path: Location | None = None  # the published file, once written
        self.size = 0  # its size in bytes

    def seal(self) -> None:
        """Move the buffered Python rows into an Arrow batch."""
        if not self.pending:
            return
        schema = SCHEMAS[self.table]
        arrays = [pa.array(col, type=field.type, memory_pool=_POOL)
                  for col, field in zip(self.cols, schema, strict=True)]
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
        for col in self.cols:
            col.clear()
        self.pending = 0


class RecordingWriter:
    """Write events to a Helios recording at ``root`` (created if missing).

    ``settings``: flush interval and segment bounds (RecordingSettings). ``flush_by_time``: flush every
    ``settings.flush_interval_s`` of ``clock`` time, checked in ``write`` (live recording); False for
    deterministic imports, which then flush only on ``flush()``/``close()`` and when segments close.
    ``clock``: seconds, monotonic; only used to time flushes.

    Counters (this run): ``events_written``; ``files_written`` (files created); ``bytes_written`` (their
    current total size on disk; rewrites of a file are not counted twice).
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | RemotePath,
        settings: RecordingSettings = RecordingSettings(),  # noqa: B008 (frozen, safe to share)
        *,
        flush_by_time: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.flush_interval_s <= 0 or settings.segment_s <= 0 or settings.segment_rows <= 0:
            raise HeliosError(
                f"recording settings must be positive: flush_interval_s={settings.flush_interval_s}, "
                f"segment_s={settings.segment_s}, segment_rows={settings.segment_rows}"
            )
        self.root: Location = location(root, endpoint_url=settings.endpoint_url)
        #: An object store (store.py): files are uploaded whole instead of renamed into place.
        self._remote = isinstance(self.root, RemotePath)
        self.settings = settings
        self._flush_by_time = flush_by_time
        self._clock = clock
        self._interval_s = settings.flush_interval_s
        self._segment_us = round(settings.segment_s * 1_000_000)
        self._segment_rows = settings.segment_rows
        # Creating the table folders up front makes a recording killed before its first flush a valid,
        # empty recording rather than "not a recording". (On an object store: marker objects, and the first
        # request, so a wrong endpoint, credential or bucket fails here, with a message saying which.)
        if isinstance(self.root, RemotePath):
            for name in (*TABLES, RUNS_DIR):
                (self.root / name).make_dir()
        else:
            for table in TABLES:
                (self.root / table).mkdir(parents=True, exist_ok=True)
            (self.root / RUNS_DIR).mkdir(exist_ok=True)
        self._open: dict[tuple[str, str, str], _Segment] = {}
        self._seq = 0
        self._last_lts: int | None = None
        self._run_id: str | None = None
        self._run_path: Location | None = None
        self._committed = -1
        self._closed = False
        self._last_flush = clock()
        self.files_written = 0
        self.bytes_written = 0

    # ---- public API ------------------------------------------------------------------------------------

    @property
    def events_written(self) -> int:
        return self._seq

    @property
    def run_id(self) -> str | None:
        """This run's id (``ROOT/_runs/<id>.json``), set by the first event."""
        return self._run_id

    @property
    def last_local_ts_us(self) -> int | None:
        """Receive time (µs) of the last event written; the next one must not be earlier."""
        return self._last_lts

    def open_days(self) -> set[int]:
        """UTC day numbers (``schema.day_of_us``) of the segments still open: their files will be rewritten,
        so retention must not delete those days' folders (call from the writing thread)."""
        return {seg.day for seg in self._open.values()}

    def write(self, event: Event) -> None:
        """Append one event (gets the next ``seq``); flushes first if the flush interval has passed."""
        if self._closed:
            raise HeliosError(f"recording writer for '{self.root}' is closed; open a new RecordingWriter")
        table = _TABLE_OF.get(type(event))
        if table is None:
            raise TypeError(f"cannot record {type(event).__name__}: not a Helios event")
        lts = event.local_ts_us
        last = self._last_lts
        if last is None:
            self._start_run(lts)
        elif lts < last:
            raise HeliosError(
                f"{event.exchange} {event.symbol}: event received at {lts} µs is written after one received at "
                f"{last} µs; recordings must be written in receive order (local_ts_us never decreasing), "
                "sort the input by receive time"
            )
        seq = self._seq
        key = (table, event.exchange, event.symbol)
        day = day_of_us(lts)
        seg = self._open.get(key)
        if seg is not None and (day != seg.day or lts - seg.first_lts >= self._segment_us):
            self._close_segment(seg)
            seg = None
        if seg is None:
            seg = self._open[key] = _Segment(self.root, key, day, lts, seq)
        n = _APPEND[table](seg.cols, event, seq)
        seg.pending += n
        seg.rows += n
        seg.dirty = True
        self._seq = seq + 1
        self._last_lts = lts
        if seg.rows >= self._segment_rows:
            self._close_segment(seg)
        elif seg.pending >= _SEAL_ROWS:
            seg.seal()
        if self._flush_by_time:
            now = self._clock()
            if now - self._last_flush >= self._interval_s:
                self._flush(now)

    def write_many(self, events: Iterable[Event]) -> None:
        for event in events:
            self.write(event)

    def flush_if_due(self) -> bool:
        """Flush if ``flush_interval_s`` has passed since the last flush (for a timer when events stop).
        Returns whether it flushed."""
        now = self._clock()
        if self._closed or now - self._last_flush < self._interval_s:
            return False
        self._flush(now)
        return True

    def flush(self) -> None:
        """Write every changed segment and commit: all events written so far are then on disk."""
        if self._closed:
            return
        self._flush(self._clock())

    def close(self) -> None:
        """Write everything and mark the run complete. Idempotent."""
        if self._closed:
            return
        for seg in list(self._open.values()):
            self._close_segment(seg)
        if self._run_id is not None:
            self._write_run_file(closed=True)
        self._closed = True

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Also on error: what was written before the error is good data.
        self.close()

    # ---- internals ---------------------------------------------------------------------------------------

    def _start_run(self, first_lts: int) -> None:
        """Claim a run id (derived from the first event, so imports are reproducible) and commit nothing."""
        runs = self.root / RUNS_DIR
        stem = f"{first_lts:016d}"
        payload = _run_payload(stem, -1, closed=False)
        final: Location
        if isinstance(runs, RemotePath):
            final = _put_new(payload, (runs / f"{s}.json" for s in _candidate_stems(stem)))
        else:
            tmp = runs / f".{stem}.{os.getpid()}.tmp"
            _write_durably(tmp, lambda fh: fh.write(payload))
            final = _publish_new(tmp, (runs / f"{s}.json" for s in _candidate_stems(stem)))
        self._run_id = final.name[: -len(".json")]
        self._run_path = final
        # The id is in the payload: rewrite it if a collision renamed the run.
        if self._run_id != stem:
            self._write_run_file(closed=False)

    def _flush(self, now: float) -> None:
        self._last_flush = now
        if self._last_lts is None:
            return
        day = day_of_us(self._last_lts)
        for seg in list(self._open.values()):
            # Same rule as in write(): local time is global and never decreases, so closing an aged
            # segment here gives the same file boundaries as closing it at its stream's next event.
            if seg.day != day or self._last_lts - seg.first_lts >= self._segment_us:
                self._close_segment(seg)
            elif seg.dirty:
                self._write_segment(seg)
        if self._committed != self._seq - 1:
            self._write_run_file(closed=False)

    def _close_segment(self, seg: _Segment) -> None:
        if seg.dirty:
            self._write_segment(seg)
        del self._open[seg.key]

    def _write_segment(self, seg: _Segment) -> None:
        """(Re)write the segment's whole file: temp file, fsync, rename."""
        seg.seal()
        schema = SCHEMAS[seg.table]
        # One chunk per column, so the bytes cannot depend on how rows were batched, i.e. on when flushes
        # happened (pyarrow 26 writes the same bytes either way; this keeps it so), and memory stays compact.
        table = pa.Table.from_batches(seg.batches, schema=schema).combine_chunks(memory_pool=_POOL)
        seg.batches = table.to_batches()
        _, exchange, symbol = seg.key
        assert self._run_id is not None
        table = table.replace_schema_metadata(file_metadata(seg.table, exchange, symbol, self._run_id))
        stem = file_stem(seg.first_lts, seg.first_seq)
        dictionary = DICTIONARY_COLUMNS[seg.table] or False
        if isinstance(seg.dir, RemotePath):
            self._put_segment(seg, table, stem, dictionary)
            return
        seg.dir.mkdir(parents=True, exist_ok=True)
        tmp = seg.dir / f".{stem}.{os.getpid()}.tmp"
        size = _write_durably(
            tmp,
            lambda fh: pq.write_table(
                table, fh, compression=COMPRESSION, use_dictionary=dictionary, row_group_size=ROW_GROUP_ROWS,
                memory_pool=_POOL,
            ),
        )
        if seg.path is None:
            seg.path = _publish_new(tmp, (seg.dir / f"{s}.parquet" for s in _candidate_stems(stem)))
            self.files_written += 1
        else:
            assert isinstance(seg.path, Path)
            os.replace(tmp, seg.path)
            _fsync_dir(seg.dir)
        self._written(seg, size)

    def _put_segment(self, seg: _Segment, table: pa.Table, stem: str, dictionary: list[str] | bool) -> None:
        """``_write_segment`` on an object store: the whole file built in memory (a segment is bounded by
        ``segment_rows``), then uploaded as one object, which appears complete or not at all."""
        assert isinstance(seg.dir, RemotePath)
        sink = pa.BufferOutputStream(memory_pool=_POOL)
        pq.write_table(table, sink, compression=COMPRESSION, use_dictionary=dictionary, row_group_size=ROW_GROUP_ROWS,
                       memory_pool=_POOL)
        data = sink.getvalue()
        if seg.path is None:
            seg.path = _put_new(data, (seg.dir / f"{s}.parquet" for s in _candidate_stems(stem)))
            self.files_written += 1
        else:
            assert isinstance(seg.path, RemotePath)
            seg.path.write_bytes(data)
        self._written(seg, data.size)

    def _written(self, seg: _Segment, size: int) -> None:
        self.bytes_written += size - seg.size
        seg.size = size
        seg.dirty = False

    def _write_run_file(self, *, closed: bool) -> None:
        assert self._run_id is not None and self._run_path is not None
        committed = self._seq - 1
        payload = _run_payload(self._run_id, committed, closed=closed)
        if isinstance(self._run_path, RemotePath):
            self._run_path.write_bytes(payload)
            self._committed = committed
            return
        tmp = self._run_path.with_name(f".{self._run_id}.{os.getpid()}.tmp")
        _write_durably(tmp, lambda fh: fh.write(payload))
        os.replace(tmp, self._run_path)
        _fsync_dir(self._run_path.parent)
        self._committed = committed


# ---- rows per event type ---------------------------------------------------------------------------------


def _append_book(cols: list[list[Any]], ev: BookSnapshot | BookDelta, seq: int) -> int:
    ts, lts, seq_c, snap, side, price, amount, uid, fuid, puid = cols
    bids, asks = ev.bids, ev.asks
    n = len(bids) + len(asks)
    if isinstance(ev, BookSnapshot):
        is_snapshot, first_id, prev_id = True, NO_ID, NO_ID
    else:
        is_snapshot, first_id, prev_id = False, ev.first_update_id, ev.prev_update_id
    if n == 0:  # keep the message and its ids: one row with no level
        n = 1
        side.append(None)
        price.append(None)
        amount.append(None)
    else:
        side.extend(["bid"] * len(bids))
        side.extend(["ask"] * len(asks))
        for levels in (bids, asks):
            for p, a in levels:
                price.append(p)
                amount.append(a)
    ts.extend([ev.ts_us] * n)
    lts.extend([ev.local_ts_us] * n)
    seq_c.extend([seq] * n)
    snap.extend([is_snapshot] * n)
    uid.extend([ev.update_id] * n)
    fuid.extend([first_id] * n)
    puid.extend([prev_id] * n)
    return n


def _append_trade(cols: list[list[Any]], ev: Trade, seq: int) -> int:
    for col, value in zip(cols, (ev.ts_us, ev.local_ts_us, seq, ev.trade_id, ev.side, ev.price, ev.amount),
                          strict=True):
        col.append(value)
    return 1


def _append_bbo(cols: list[list[Any]], ev: BestBidOffer, seq: int) -> int:
    values = (ev.ts_us, ev.local_ts_us, seq, ev.update_id, ev.bid_price, ev.bid_amount, ev.ask_price, ev.ask_amount)
    for col, value in zip(cols, values, strict=True):
        col.append(value)
    return 1


def _append_gap(cols: list[list[Any]], ev: FeedGap, seq: int) -> int:
    for col, value in zip(cols, (ev.ts_us, ev.local_ts_us, seq, ev.reason), strict=True):
        col.append(value)
    return 1


_TABLE_OF: dict[type, str] = {
    BookSnapshot: "book",
    BookDelta: "book",
    Trade: "trades",
    BestBidOffer: "bbo",
    FeedGap: "gaps",
}
_APPEND: dict[str, Callable[[list[list[Any]], Any, int], int]] = {
    "book": _append_book,
    "trades": _append_trade,
    "bbo": _append_bbo,
    "gaps": _append_gap,
}


# ---- files -----------------------------------------------------------------------------------------------


def _run_payload(run_id: str, committed_seq: int, *, closed: bool) -> bytes:
    """``_runs/<id>.json``: every event of the run with seq <= committed_seq is in complete files;
    ``closed``: the writer was closed normally (nothing past the commit exists)."""
    doc = {"format_version": FORMAT_VERSION, "run": run_id, "committed_seq": committed_seq, "closed": closed}
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def _candidate_stems(stem: str) -> Iterator[str]:
    yield stem
    k = 1
    while True:
        yield f"{stem}-{k}"
        k += 1


def _write_durably(tmp: Path, write: Callable[[BinaryIO], Any]) -> int:
    """Write ``tmp`` with ``write(fh)`` and fsync it; returns its size in bytes."""
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            return fh.tell()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _publish_new(tmp: Path, candidates: Iterator[Path]) -> Path:
    """Give ``tmp`` the first candidate name that does not exist yet, never replacing a file (a hard link
    fails on an existing name, so this also holds against another writer doing the same)."""
    for final in candidates:
        try:
            os.link(tmp, final)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:  # e.g. ENOSPC: no temp file left behind, the caller decides
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            # A filesystem without hard links: check, then rename.
            if final.exists():
                continue
            os.replace(tmp, final)
        else:
            os.unlink(tmp)
        _fsync_dir(final.parent)
        return final
    raise AssertionError("unreachable: candidate names are endless")


def _put_new(data: bytes | pa.Buffer, candidates: Iterator[RemotePath]) -> RemotePath:
    """``_publish_new`` on an object store: upload ``data`` under the first candidate name not taken. The check
    and the upload are two requests (object stores have no atomic create-if-absent here): one writer per
    recording, which a writer's run id and names make the rule anyway."""
    for final in candidates:
        if final.exists():
            continue
        final.write_bytes(data)
        return final
    raise AssertionError("unreachable: candidate names are endless")


#: errno values of ``os.link`` on a filesystem that has no hard links (FAT, some FUSE and network mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS})


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` survive a power cut (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
