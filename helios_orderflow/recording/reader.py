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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Event, FeedGap, Level, Trade
from helios_orderflow.core.symbols import symbol_from_path
from helios_orderflow.recording.schema import DATA_TABLES, FORMAT_VERSION, META_RUN, RUNS_DIR, SCHEMAS, TABLES

Stream = tuple[str, str]  # (ccxt exchange id, unified symbol)
_Runs = dict[str, "int | None"]  # run id -> committed seq; None = closed normally (no filter)


@dataclass(frozen=True)
class RecordingIndex:
    """One walk of a recording's folders: every stream's Parquet files by table, in read order.

    Every reader function takes an index wherever it takes a recording's path: a caller that asks several
    things of one recording (which streams, its content key, its events) walks the folders once. An index is
    a snapshot: files a live writer adds after it are not seen (take a new one to see them)."""

    base: Path
    files: Mapping[Stream, Mapping[str, list[Path]]]


def index_recording(root: str | os.PathLike[str] | RecordingIndex) -> RecordingIndex:
    """Walk the recording at ``root`` once (an index is returned as it is)."""
    if isinstance(root, RecordingIndex):
        return root
    base = _require_recording(root)
    return RecordingIndex(base, _streams(base))


def read_events(
    root: str | os.PathLike[str] | RecordingIndex,
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


def _merged(chains: list[Iterator[tuple[Any, ...]]]) -> Iterator[Event]:
    if not chains:
        return
    merged = chains[0] if len(chains) == 1 else heapq.merge(*chains)
    for item in merged:
        yield item[-1]


def list_streams(root: str | os.PathLike[str] | RecordingIndex) -> list[Stream]:
    """(exchange, unified symbol) of every stream with at least one file, sorted. Lists folders only."""
    return sorted(index_recording(root).files)


def stream_span(root: str | os.PathLike[str] | RecordingIndex, exchange: str, symbol: str) -> tuple[int, int]:
    """(first, last) exchange ``timestamp`` in µs over all tables of one stream, from Parquet statistics
    (file footers only; rows are decoded only for the uncommitted tail of a killed run)."""
    index = index_recording(root)
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


def content_key(root: str | os.PathLike[str] | RecordingIndex, exchange: str, symbol: str) -> str:
    """A stable hash of what ``read_events`` would return for one stream: the names, sizes and mtimes of
    its files and of the run commit records (no file is opened). Changes whenever the data may have."""
    index = index_recording(root)
    base = index.base
    files = _stream_or_raise(index, exchange, symbol)
    h = hashlib.sha256(f"helios-recording-v{FORMAT_VERSION}\n{exchange}\n{symbol}\n".encode())
    paths = [p for table in files.values() for p in table]
    runs_dir = base / RUNS_DIR
    if runs_dir.is_dir():
        paths.extend(sorted(p for p in runs_dir.iterdir() if p.suffix == ".json" and _visible(p.name)))
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(base).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# ---- layout --------------------------------------------------------------------------------------------


def _require_recording(root: str | os.PathLike[str]) -> Path:
    base = Path(root)
    if not base.is_dir() or not any((base / t).is_dir() for t in DATA_TABLES):
        raise HeliosError(
            f"'{base}' is not a Helios recording: no book/, trades/ or bbo/ folder; "
            "record with 'helios record' or import with 'helios import'"
        )
    return base


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


def _streams(base: Path) -> dict[Stream, dict[str, list[Path]]]:
    """stream -> table -> its visible Parquet files, partitions in date order and files in name order."""
    out: dict[Stream, dict[str, list[Path]]] = {}
    for table in TABLES:
        tdir = base / table
        if not tdir.is_dir():
            continue
        for exchange, edir in _subdirs(tdir, "exchange="):
            for sym_name, sdir in _subdirs(edir, "symbol="):
                files: list[Path] = []
                for _, ddir in _subdirs(sdir, "date="):
                    with os.scandir(ddir) as it:
                        names = sorted(e.name for e in it if e.name.endswith(".parquet") and _visible(e.name))
                    files.extend(ddir / n for n in names)
                if files:
                    out.setdefault((exchange, symbol_from_path(sym_name)), {})[table] = files
    return out


def _stream_or_raise(index: RecordingIndex, exchange: str, symbol: str) -> Mapping[str, list[Path]]:
    streams = index.files
    if (exchange, symbol) not in streams:
        raise HeliosError(_no_stream_message(index.base, exchange, symbol, streams))
    return streams[(exchange, symbol)]


def _no_stream_message(base: Path, exchange: str | None, symbol: str | None, streams: Any) -> str:
    want = " ".join(x for x in (exchange, symbol) if x) or "any stream"
    have = ", ".join(f"{e} {s}" for e, s in sorted(streams)) or "nothing yet"
    return (
        f"recording '{base}' has no data for {want}; it has: {have}. "
        "Name a stream it has, or record with 'helios record' / import with 'helios import'"
    )


def _load_runs(base: Path) -> _Runs:
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


def _open(path: Path, table: str) -> pq.ParquetFile:
    try:
        pf = pq.ParquetFile(path)
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


def _run_of(pf: pq.ParquetFile) -> str:
    meta = pf.metadata.metadata or {}
    return meta.get(META_RUN, b"").decode()


def _committed_of(pf: pq.ParquetFile, runs: _Runs) -> int | None:
    run = _run_of(pf)
    return runs.get(run) if run else None


# ---- rows to events ------------------------------------------------------------------------------------


def _chain(
    chain_no: int,
    table: str,
    stream: Stream,
    files: list[Path],
    runs: _Runs,
    start_us: int | None,
    end_us: int | None,
    chunk_rows: int,
) -> Iterator[tuple[Any, ...]]:
    """(local_ts, run, seq, chain_no, n, event) for one table of one stream, in order."""
    exchange, symbol = stream
    to_events = _TO_EVENTS[table]
    names = SCHEMAS[table].names
    n = 0
    for path in files:
        pf = _open(path, table)
        run = _run_of(pf)
        committed = runs.get(run) if run else None
        groups = _row_groups(pf.metadata, committed, start_us, end_us)
        if not groups:
            continue
        batches = pf.iter_batches(batch_size=chunk_rows, row_groups=groups, columns=names, use_threads=False)
        columns = ([batch.column(name).to_pylist() for name in names] for batch in batches)
        for lts, seq, event in to_events(columns, exchange, symbol, committed, start_us, end_us):
            yield lts, run, seq, chain_no, n, event
            n += 1


def _row_groups(md: pq.FileMetaData, committed: int | None, start_us: int | None, end_us: int | None) -> list[int]:
    """Row groups that may hold wanted rows, judged by their statistics."""
    ts_i = md.schema.names.index("timestamp")
    seq_i = md.schema.names.index("seq")
    out = []
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        if rg.num_rows == 0:
            continue
        if committed is not None:
            st = rg.column(seq_i).statistics
            if st is not None and st.has_min_max and st.min > committed:
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
