"""Read a Helios recording back as events, streaming, in the order they were written.

``read_events`` walks each (table, exchange, symbol) as one chain of files (partitions in date order, files
in name order, row batches of ``chunk_rows`` via ``ParquetFile.iter_batches``) and merges the chains with
``heapq.merge`` on (local_timestamp, run, seq). Memory is bounded by one batch per chain, never by the
size of the recording. Rows past a run's commit (``_runs/<id>.json``, see writer.py) are skipped: a
recording whose writer was killed reads back as an exact prefix of what was written.

Files and folders whose names start with ``.`` (temp files of a writer at work or killed) or ``_`` are
ignored, as Spark, pyarrow.dataset and DuckDB conventions have it.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pyarrow as pa
import pyarrow.parquet as pq

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Event, FeedGap, Level, Trade
from helios_orderflow.core.symbols import symbol_from_path
from helios_orderflow.recording.schema import (
    DATA_TABLES,
    FORMAT_VERSION,
    META_PARTS,
    META_RUN,
    RUNS_DIR,
    SCHEMAS,
    TABLES,
)
from helios_orderflow.recording.store import Location, RemotePath, location

Stream = tuple[str, str]  # (ccxt exchange id, unified symbol)
#: What the reader functions take as a recording: a local path, an object store URL (``s3://bucket/prefix``,
#: store.py), a ``RemotePath``, or an index already made.
Root = str | os.PathLike[str] | RemotePath
_Runs = dict[str, "int | None"]
T = TypeVar("T")  # run id -> committed seq; None = closed normally (no filter)


@dataclass(frozen=True)
class RecordingIndex:
    """One walk of a recording's folders: every stream's Parquet files by table, in read order.

    Every reader function takes an index wherever it takes a recording's path: a caller that asks several
    things of one recording (which streams, its content key, its events) walks the folders once. An index is
    a snapshot: files a live writer adds after it are not seen (take a new one to see them)."""

    base: Location
    files: Mapping[Stream, Mapping[str, list[Location]]]


def index_recording(root: Root | RecordingIndex) -> RecordingIndex:
    """Walk the recording at ``root`` once (an index is returned as it is). On an object store, one listing of
    the whole prefix (store.py), which also gives every file's size and time."""
    if isinstance(root, RecordingIndex):
        return root
    base = location(root)
    if isinstance(base, RemotePath):
        return RecordingIndex(base, _streams_remote(base))
    base = _require_recording(base)
    return RecordingIndex(base, _streams(base))


def read_events(
    root: Root | RecordingIndex,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    start_us: int | None = None,
    end_us: int | None = None,
    chunk_rows: int = 65_536,
) -> Iterator[Event]:
    """Every event of the recording at ``root``, in written order, across streams, tables and files.

    ``exchange``/``symbol`` (ccxt id, unified symbol) select streams; naming one the recording does not
    have is a HeliosError that lists what it has. ``start_us``/``end_us`` keep events whose exchange
    ``timestamp`` is in [start_us, end_us) (µs). ``chunk_rows`` bounds the rows decoded at once per
    (table, stream). Events equal the written ones field for field. Bad arguments raise here, at the
    call, not at the first ``next``.
    """
    if chunk_rows < 1:
        raise HeliosError(f"chunk_rows must be at least 1, got {chunk_rows}")
    index = index_recording(root)
    base, streams = index.base, index.files
    wanted = [
        s for s in sorted(streams) if (exchange is None or s[0] == exchange) and (symbol is None or s[1] == symbol)
    ]
    if not wanted and (exchange is not None or symbol is not None):
        raise HeliosError(_no_stream_message(base, exchange, symbol, streams))
    runs = _load_runs(base)
    chains: list[Iterator[tuple[Any, ...]]] = []
    for stream in wanted:
        for table, files in streams[stream].items():
            chains.append(_chain(len(chains), table, stream, files, runs, start_us, end_us, chunk_rows))
    return _merged(chains)


def read_events_after(
    root: Root | RecordingIndex,
    exchange: str,
    symbol: str,
    position: tuple[int, str, int],
    *,
    chunk_rows: int = 65_536,
) -> Iterator[Event]:
    """The events of one stream that come after ``position`` = (receive µs, run, seq) in ``read_events``' order
    (what an engine checkpoint has not seen; ``recording/checkpoints.py``). A file that ends before the
    position's receive time is not decoded."""
    index = index_recording(root)
    files = _stream_or_raise(index, exchange, symbol)
    runs = _load_runs(index.base)
    lts0 = position[0]
    chains = [
        _chain(i, table, (exchange, symbol), _from_receive_time(paths, lts0), runs, None, None, chunk_rows)
        for i, (table, paths) in enumerate(files.items())
    ]
    merged = chains[0] if len(chains) == 1 else heapq.merge(*chains)
    for item in merged:
        if (item[0], item[1], item[2]) > position:
            yield item[-1]


def _from_receive_time(paths: list[Location], lts: int) -> list[Location]:
    """``paths`` (one table of one stream, in read order) without the files that end before ``lts``: a file
    is named by its first row's receive time, so a file followed by one starting at or before ``lts`` ends
    before it (the writer never goes back in receive time)."""
    starts = [_first_lts(p) for p in paths]
    keep = 0
    for i in range(1, len(paths)):
        nxt = starts[i]
        if nxt is not None and nxt <= lts and all(s is not None for s in starts[: i + 1]):
            keep = i
    return paths[keep:]


def _first_lts(path: Location) -> int | None:
    head = path.name.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _merged(chains: list[Iterator[tuple[Any, ...]]]) -> Iterator[Event]:
    if not chains:
        return
    merged = chains[0] if len(chains) == 1 else heapq.merge(*chains)
    for item in merged:
        yield item[-1]


def list_streams(root: Root | RecordingIndex) -> list[Stream]:
    """(exchange, unified symbol) of every stream with at least one file, sorted. Lists folders only."""
    return sorted(index_recording(root).files)


def _fresh(fn: Callable[[RecordingIndex], T]) -> Callable[[Root | RecordingIndex], T]:
    """Run ``fn`` on the index; if a file it lists vanished meanwhile (``helios compact`` merged it, retention
    deleted its day), walk the folders again and retry."""
    def run(root: Root | RecordingIndex) -> T:
        index = index_recording(root)
        for _ in range(5):
            try:
                return fn(index)
            except FileNotFoundError:
                index = index_recording(index.base)
            except HeliosError as e:
                if not isinstance(e.__cause__, FileNotFoundError):
                    raise
                index = index_recording(index.base)
        return fn(index)
    return run


def stream_span(root: Root | RecordingIndex, exchange: str, symbol: str) -> tuple[int, int]:
    """(first, last) exchange ``timestamp`` in µs over all tables of one stream, from Parquet statistics
    (file footers only; rows are decoded only for the uncommitted tail of a killed run)."""
    return _fresh(lambda index: _stream_span(index, exchange, symbol))(root)


def _stream_span(index: RecordingIndex, exchange: str, symbol: str) -> tuple[int, int]:
    base = index.base
    files = _stream_or_raise(index, exchange, symbol)
    runs = _load_runs(base)
    lo: int | None = None
    hi: int | None = None
    for table, paths in files.items():
        for path in paths:
            pf = _open(path, table)
            committed = _committed_of(pf, runs)
            md = pf.metadata
            ts_i = md.schema.names.index("timestamp")
            seq_i = md.schema.names.index("seq")
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                if rg.num_rows == 0:
                    continue
                ts_stats = rg.column(ts_i).statistics
                seq_stats = rg.column(seq_i).statistics
                exact = committed is None or (seq_stats is not None and seq_stats.has_min_max
                                              and seq_stats.max <= committed)
                if exact and ts_stats is not None and ts_stats.has_min_max:
                    r_lo, r_hi = ts_stats.min, ts_stats.max
                else:  # decode this row group: part of it may lie past the commit, or it has no statistics
                    t = pf.read_row_group(i, columns=["timestamp", "seq"])
                    ts = [x for x, s in zip(t.column("timestamp").to_pylist(), t.column("seq").to_pylist(), strict=True)
                          if committed is None or s <= committed]
                    if not ts:
                        continue
                    r_lo, r_hi = min(ts), max(ts)
                lo = r_lo if lo is None else min(lo, r_lo)
                hi = r_hi if hi is None else max(hi, r_hi)
    if lo is None or hi is None:
        raise HeliosError(
            f"recording '{base}' has no committed events for {exchange} {symbol}; "
            "record with 'helios record' or import with 'helios import'"
        )
    return lo, hi


def content_key(root: Root | RecordingIndex, exchange: str, symbol: str) -> str:
    """A stable hash of what ``read_events`` would return for one stream: the names, sizes and mtimes of
    its files and of the run commit records (no file is opened). Changes whenever the data may have."""
    return _fresh(lambda index: _content_key(index, exchange, symbol))(root)


def _content_key(index: RecordingIndex, exchange: str, symbol: str) -> str:
    base = index.base
    files = _stream_or_raise(index, exchange, symbol)
    h = hashlib.sha256(f"helios-recording-v{FORMAT_VERSION}\n{exchange}\n{symbol}\n".encode())
    paths = [p for table in files.values() for p in table]
    runs_dir = base / RUNS_DIR
    if runs_dir.is_dir():
        paths.extend(sorted(p for p in runs_dir.iterdir() if p.suffix == ".json" and _visible(p.name)))
    for p in paths:
        st = p.stat()
        h.update(f"{cast(Any, p).relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ---- layout --------------------------------------------------------------------------------------------


def _require_recording(root: str | os.PathLike[str] | Path) -> Path:
    base = Path(root)
    if not base.is_dir() or not any((base / t).is_dir() for t in DATA_TABLES):
        raise HeliosError(_not_a_recording(base))
    return base


def _not_a_recording(base: Location) -> str:
    return (f"'{base}' is not a Helios recording: no book/, trades/ or bbo/ folder; "
            "record with 'helios record' or import with 'helios import'")


def _visible(name: str) -> bool:
    return not name.startswith((".", "_"))


def _subdirs(path: Path, prefix: str) -> list[tuple[str, Path]]:
    """(value, dir) of the ``prefix=value`` folders in ``path``, sorted by value."""
    out = []
    with os.scandir(path) as it:
        for entry in it:
            if entry.name.startswith(prefix) and entry.is_dir():
                out.append((entry.name[len(prefix):], Path(entry.path)))
    return sorted(out)


def _streams(base: Path) -> dict[Stream, dict[str, list[Location]]]:
    """stream -> table -> its visible Parquet files, partitions in date order and files in name order."""
    out: dict[Stream, dict[str, list[Location]]] = {}
    for table in TABLES:
        tdir = base / table
        if not tdir.is_dir():
            continue
        for exchange, edir in _subdirs(tdir, "exchange="):
            for sym_name, sdir in _subdirs(edir, "symbol="):
                files: list[Location] = []
                for _, ddir in _subdirs(sdir, "date="):
                    with os.scandir(ddir) as it:
                        names = sorted(e.name for e in it if e.name.endswith(".parquet") and _visible(e.name))
                    files.extend(ddir / n for n in names)
                if files:
                    out.setdefault((exchange, symbol_from_path(sym_name)), {})[table] = files
    return out


def _streams_remote(base: RemotePath) -> dict[Stream, dict[str, list[Location]]]:
    """``_streams`` from one listing of everything under ``base`` (an object store: a request per folder
    would cost a round trip per table, stream and day). Raises like ``_require_recording``."""
    entries = base.walk_files()
    prefix = len(base.path) + 1
    tables_seen: set[str] = set()
    by_dir: dict[tuple[str, str, str, str], list[Location]] = {}
    for entry in entries:
        parts = entry.path[prefix:].split("/")
        tables_seen.add(parts[0])
        if len(parts) != 5 or parts[0] not in TABLES:
            continue
        table, edir, sdir, ddir, name = parts
        if not (edir.startswith("exchange=") and sdir.startswith("symbol=") and ddir.startswith("date=")):
            continue
        if name.endswith(".parquet") and _visible(name):
            by_dir.setdefault((table, edir, sdir, ddir), []).append(entry)
    # A writer that has written nothing yet left folder markers only (``RemotePath.make_dir``): listed as
    # directories, which walk_files drops; ask for them by name.
    if not tables_seen.intersection(DATA_TABLES) and not any((base / t).is_dir() for t in DATA_TABLES):
        raise HeliosError(_not_a_recording(base))
    out: dict[Stream, dict[str, list[Location]]] = {}
    for (table, edir, sdir, _), files in sorted(by_dir.items()):  # tables, then exchange, symbol, date
        stream = (edir[len("exchange="):], symbol_from_path(sdir[len("symbol="):]))
        out.setdefault(stream, {}).setdefault(table, []).extend(sorted(files, key=lambda p: p.name))
    # Tables in TABLES order, as _streams has them (the merge's chain numbers follow it).
    return {s: {t: tables[t] for t in TABLES if t in tables} for s, tables in out.items()}


def _stream_or_raise(index: RecordingIndex, exchange: str, symbol: str) -> Mapping[str, list[Location]]:
    streams = index.files
    if (exchange, symbol) not in streams:
        raise HeliosError(_no_stream_message(index.base, exchange, symbol, streams))
    return streams[(exchange, symbol)]


def _no_stream_message(base: Location, exchange: str | None, symbol: str | None, streams: Any) -> str:
    want = " ".join(x for x in (exchange, symbol) if x) or "any stream"
    have = ", ".join(f"{e} {s}" for e, s in sorted(streams)) or "nothing yet"
    return (
        f"recording '{base}' has no data for {want}; it has: {have}. "
        "Name a stream it has, or record with 'helios record' / import with 'helios import'"
    )


def _load_runs(base: Location) -> _Runs:
    """Commit records of the writer runs. A file whose run has no record (e.g. copied without
    ``_runs/``) is read whole."""
    runs: _Runs = {}
    runs_dir = base / RUNS_DIR
    if not runs_dir.is_dir():
        return runs
    for path in runs_dir.iterdir():
        if path.suffix != ".json" or not _visible(path.name):
            continue
        try:
            doc = json.loads(path.read_text())
            runs[path.stem] = None if doc["closed"] else int(doc["committed_seq"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HeliosError(
                f"run record '{path}' is damaged ({e}); it is only ever replaced whole, so something else "
                "changed it: delete it to read that run's files whole"
            ) from e
    return runs


def _open(path: Location, table: str) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path) if type(path) is not RemotePath else path.open_parquet()
    except (OSError, pa.ArrowException) as e:
        raise HeliosError(
            f"cannot read '{path}': {e}; Helios only ever leaves complete files, so it was damaged or put "
            "there by something else: move it out of the recording"
        ) from e
    missing = [n for n in SCHEMAS[table].names if n not in pf.schema_arrow.names]
    if missing:
        raise HeliosError(
            f"'{path}' is not a Helios {table} file: no column(s) {', '.join(missing)}; "
            "move it out of the recording"
        )
    return pf


def run_of(md: pq.FileMetaData) -> str:
    """The id of the writer run that made a file (its ``helios.run`` metadata; "" if none)."""
    meta = md.metadata or {}
    return meta.get(META_RUN, b"").decode()


def parts_of(md: pq.FileMetaData) -> tuple[str, ...]:
    """The names of the segment files a merged file holds (``helios.parts``; empty for a segment)."""
    raw = (md.metadata or {}).get(META_PARTS)
    return tuple(json.loads(raw)) if raw else ()


def _run_of(pf: pq.ParquetFile) -> str:
    return run_of(pf.metadata)


def _parts_of(pf: pq.ParquetFile) -> tuple[str, ...]:
    return parts_of(pf.metadata)


def _committed_of(pf: pq.ParquetFile, runs: _Runs) -> int | None:
    run = _run_of(pf)
    return runs.get(run) if run else None


# ---- rows to events ------------------------------------------------------------------------------------


def _chain(
    chain_no: int,
    table: str,
    stream: Stream,
    files: list[Location],
    runs: _Runs,
    start_us: int | None,
    end_us: int | None,
    chunk_rows: int,
) -> Iterator[tuple[Any, ...]]:
    """(local_ts, run, seq, chain_no, n, event) for one table of one stream, in order.

    Files are opened one at a time, as the chain reaches them, so ``helios compact`` may have merged some
    since they were listed (compact.py): a listed file that a merged file already read holds (same run) is
    skipped, and a listed file that is gone is read from the merged file that now holds it, after the last
    row this chain returned from that run. Every row comes out once."""
    exchange, symbol = stream
    to_events = _TO_EVENTS[table]
    names = SCHEMAS[table].names
    n = 0
    held: dict[str, str] = {}  # file name -> run of a merged file already opened that holds its rows
    last_seq: dict[str, int] = {}  # run -> seq of the last row returned from it
    for path in files:
        pf = _try_open(path, table)
        after: int | None = None  # return only rows with seq > after (reading a merged file mid-way)
        if path.name in held:
            if pf is None or _run_of(pf) == held[path.name]:
                continue  # merged into a file this chain has read
        elif pf is None:
            pf = _holder_of(path, table)
            if pf is None:
                raise HeliosError(
                    f"'{path}' was deleted while the recording was being read (retention deletes the oldest "
                    "days); read again"
                )
            after = last_seq.get(_run_of(pf))
        run = _run_of(pf)
        for name in _parts_of(pf):
            held[name] = run
        committed = runs.get(run) if run else None
        groups = _row_groups(pf.metadata, committed, start_us, end_us, after)
        if not groups:
            continue
        batches = pf.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=names, use_threads=False)
        columns = ([batch.column(name).to_pylist() for name in names] for batch in batches)
        for lts, seq, event in to_events(columns, exchange, symbol, committed, start_us, end_us):
            if after is not None and seq <= after:
                continue
            yield lts, run, seq, chain_no, n, event
            last_seq[run] = seq
            n += 1


def _try_open(path: Location, table: str) -> pq.ParquetFile | None:
    """The file, or None when it no longer exists (merged by ``helios compact`` or deleted by retention)."""
    try:
        return _open(path, table)
    except HeliosError as e:
        if isinstance(e.__cause__, FileNotFoundError):
            return None
        raise


def _holder_of(path: Location, table: str) -> pq.ParquetFile | None:
    """The merged file in ``path``'s folder that holds ``path``'s rows, None if there is none."""
    try:
        if isinstance(path, RemotePath):
            names = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".parquet") and _visible(p.name))
        else:
            with os.scandir(path.parent) as it:
                names = sorted(e.name for e in it if e.name.endswith(".parquet") and _visible(e.name))
    except FileNotFoundError:
        return None
    for name in names:
        if name > path.name:
            break  # a merged file has its first part's name, which sorts before every other part's
        pf = _try_open(path.parent / name, table)
        if pf is not None and path.name in _parts_of(pf):
            return pf
    return None


def _row_groups(md: pq.FileMetaData, committed: int | None, start_us: int | None, end_us: int | None,
                after: int | None = None) -> list[int]:
    """Row groups that may hold wanted rows, judged by their statistics (``after``: only rows with a greater
    seq are wanted)."""
    ts_i = md.schema.names.index("timestamp")
    seq_i = md.schema.names.index("seq")
    out = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        if rg.num_rows == 0:
            continue
        if committed is not None or after is not None:
            st = rg.column(seq_i).statistics
            if st is not None and st.has_min_max and (
                    (committed is not None and st.min > committed) or (after is not None and st.max <= after)):
                continue
        if start_us is not None or end_us is not None:
            st = rg.column(ts_i).statistics
            if st is not None and st.has_min_max:
                if (end_us is not None and st.min >= end_us) or (start_us is not None and st.max < start_us):
                    continue
        out.append(i)
    return out


_Columns = Iterator[list[list[Any]]]
_Out = Iterator[tuple[int, int, Event]]


def _book_events(columns: _Columns, exchange: str, symbol: str, committed: int | None,
                 start_us: int | None, end_us: int | None) -> _Out:
    """Group consecutive rows with one seq into a BookSnapshot or BookDelta (rows of one message are
    consecutive and may span batches, never files)."""
    cur: tuple[Any, ...] | None = None  # ts, lts, seq, is_snapshot, uid, fuid, puid of the open message
    bids: list[Level] = []
    asks: list[Level] = []

    def build() -> tuple[int, int, Event]:
        assert cur is not None
        ts, lts, seq, snap, uid, fuid, puid = cur
        if snap:
            ev: Event = BookSnapshot(exchange, symbol, ts, lts, uid, tuple(bids), tuple(asks))
        else:
            ev = BookDelta(exchange, symbol, ts, lts, fuid, uid, puid, tuple(bids), tuple(asks))
        return lts, seq, ev

    def wanted(ts: int) -> bool:
        return (start_us is None or ts >= start_us) and (end_us is None or ts < end_us)

    past_commit = False
    for cols in columns:
        for ts, lts, seq, snap, side, price, amount, uid, fuid, puid in zip(*cols, strict=True):
            if cur is None or seq != cur[2]:
                if cur is not None and wanted(cur[0]):
                    yield build()
                if committed is not None and seq > committed:  # rows are in seq order within a file
                    cur = None
                    past_commit = True
                    break
                cur = (ts, lts, seq, snap, uid, fuid, puid)
                bids = []
                asks = []
            if side == "bid":
                bids.append((price, amount))
            elif side == "ask":
                asks.append((price, amount))
        if past_commit:
            break
    if cur is not None and wanted(cur[0]):
        yield build()


def _trade_events(columns: _Columns, exchange: str, symbol: str, committed: int | None,
                  start_us: int | None, end_us: int | None) -> _Out:
    for cols in columns:
        for ts, lts, seq, trade_id, side, price, amount in zip(*cols, strict=True):
            if committed is not None and seq > committed:
                return
            if (start_us is None or ts >= start_us) and (end_us is None or ts < end_us):
                yield lts, seq, Trade(exchange, symbol, ts, lts, price, amount, side, trade_id)


def _bbo_events(columns: _Columns, exchange: str, symbol: str, committed: int | None,
                start_us: int | None, end_us: int | None) -> _Out:
    for cols in columns:
        for ts, lts, seq, uid, bid_p, bid_a, ask_p, ask_a in zip(*cols, strict=True):
            if committed is not None and seq > committed:
                return
            if (start_us is None or ts >= start_us) and (end_us is None or ts < end_us):
                yield lts, seq, BestBidOffer(exchange, symbol, ts, lts, uid, bid_p, bid_a, ask_p, ask_a)


def _gap_events(columns: _Columns, exchange: str, symbol: str, committed: int | None,
                start_us: int | None, end_us: int | None) -> _Out:
    for cols in columns:
        for ts, lts, seq, reason in zip(*cols, strict=True):
            if committed is not None and seq > committed:
                return
            if (start_us is None or ts >= start_us) and (end_us is None or ts < end_us):
                yield lts, seq, FeedGap(exchange, symbol, ts, lts, reason)


_TO_EVENTS = {"book": _book_events, "trades": _trade_events, "bbo": _bbo_events, "gaps": _gap_events}
