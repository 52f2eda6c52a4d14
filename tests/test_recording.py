"""Helios recordings (helios_orderflow/recording): exact round trip of the real Binance BTCUSDT stream,
partitioning, ordering across many files and partitions, bounded memory, byte-identical re-imports, commits."""

from __future__ import annotations

import dataclasses
import functools
import gc
import gzip
import json
import os
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, FeedGap, Trade
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.recording import (
    FORMAT_VERSION,
    RecordingWriter,
    content_key,
    list_streams,
    read_events,
    stream_span,
)
from helios_orderflow.recording.schema import SCHEMAS

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance-spot-btcusdt"
FILES = (DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz")


# ---- a tiny local parser of ../shared/data/binance-spot-btcusdt (independent of the importers) ----------


def _levels(raw: list[list[str]]) -> tuple[tuple[float, float], ...]:
    return tuple((float(p), float(q)) for p, q in raw)


def _parse(line: str) -> Event | None:
    """``<local ns> <raw JSON>``: depth diffs (U, u, E ms), bookTicker (no time: local), trade (T ms;
    m true = buyer is maker, so the taker sold), one REST snapshot (no time: local)."""
    ns, _, raw = line.partition(" ")
    local_us = int(ns) // 1000
    msg = json.loads(raw)
    if "lastUpdateId" in msg:
        return BookSnapshot("binance", "BTC/USDT", local_us, local_us, msg["lastUpdateId"],
                            _levels(msg["bids"]), _levels(msg["asks"]))
    d = msg["data"]
    kind = msg["stream"].rsplit("@", 1)[-1]
    if kind == "trade":
        return Trade("binance", "BTC/USDT", d["T"] * 1000, local_us, float(d["p"]), float(d["q"]),
                     "sell" if d["m"] else "buy", str(d["t"]))
    if kind == "bookTicker":
        return BestBidOffer("binance", "BTC/USDT", local_us, local_us, d["u"],
                            float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]))
    if d.get("e") == "depthUpdate":
        return BookDelta("binance", "BTC/USDT", d["E"] * 1000, local_us, d["U"], d["u"], NO_ID,
                         _levels(d["b"]), _levels(d["a"]))
    return None


@functools.cache
def btcusdt_events() -> tuple[Event, ...]:
    """Every event of both files of ../shared/data/binance-spot-btcusdt, in receive order."""
    if not DATA.is_dir():
        pytest.fail(f"real exchange data not found at {DATA}; these tests need ../shared/data")
    out: list[Event] = []
    for path in FILES:
        with gzip.open(path, "rt") as fh:
            out.extend(ev for line in fh if line.strip() and (ev := _parse(line)) is not None)
    return tuple(out)


def parquet_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def events() -> tuple[Event, ...]:
    return btcusdt_events()


@pytest.fixture(scope="module")
def recorded(events: tuple[Event, ...], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rec") / "btcusdt"
    with RecordingWriter(root, flush_by_time=False) as writer:
        writer.write_many(events)
        assert writer.events_written == len(events)
        assert writer.files_written == len(parquet_files(root))
        assert writer.bytes_written == sum(p.stat().st_size for p in parquet_files(root))
    return root


# ---- round trip and layout ----------------------------------------------------------------------------------


def test_real_binance_stream_reads_back_event_for_event(events: tuple[Event, ...], recorded: Path) -> None:
    kinds = [type(e) for e in events]
    # The checked figures of ../shared/README.md: the parser saw the whole stream.
    assert (kinds.count(BookSnapshot), kinds.count(BookDelta), kinds.count(Trade), kinds.count(BestBidOffer)) == (
        1, 6495, 19904, 73174)
    back = list(read_events(recorded))
    assert len(back) == len(events) == 99574
    assert back == list(events)


def test_book_rows_are_one_per_level_and_messages_keep_their_ids(events: tuple[Event, ...], recorded: Path) -> None:
    book = ds.dataset(recorded / "book", format="parquet", partitioning="hive").to_table()
    levels = sum(len(e.bids) + len(e.asks) for e in events if isinstance(e, (BookSnapshot, BookDelta)))
    assert book.num_rows == levels
    snapshot = book.filter(ds.field("is_snapshot"))
    assert snapshot.num_rows == 2000  # the 1000-level REST snapshot
    assert set(snapshot.column("update_id").to_pylist()) == {50093239218}
    assert set(snapshot.column("first_update_id").to_pylist()) == {NO_ID}


def test_partitions_are_exchange_symbol_and_utc_date_of_local_time(recorded: Path) -> None:
    dates = sorted(p.name for p in (recorded / "book" / "exchange=binance" / "symbol=BTC_USDT").iterdir())
    assert dates == ["date=2024-08-08", "date=2024-08-09"]  # the stream crosses midnight UTC
    for path in parquet_files(recorded):
        table, exchange, symbol, date = path.relative_to(recorded).parts[:4]
        assert (exchange, symbol) == ("exchange=binance", "symbol=BTC_USDT")
        pf = pq.ParquetFile(path)
        assert pf.schema_arrow.names == SCHEMAS[table].names  # no exchange/symbol columns in the files
        meta = pf.metadata.metadata
        assert meta[b"helios.format_version"] == str(FORMAT_VERSION).encode()
        assert (meta[b"helios.table"], meta[b"helios.exchange"], meta[b"helios.symbol"]) == (
            table.encode(), b"binance", b"BTC/USDT")
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
        lts = pf.read(columns=["local_timestamp"]).column(0).to_pylist()
        day = date.removeprefix("date=")
        assert {f"{dt:%Y-%m-%d}" for dt in _utc(lts)} == {day}
        assert path.name == f"{lts[0]:016d}-{pf.read(columns=['seq']).column(0)[0].as_py():012d}.parquet"


def _utc(ts_us: list[int]) -> list:
    import datetime as dt

    return [dt.datetime.fromtimestamp(t / 1e6, tz=dt.UTC) for t in ts_us]


def test_pyarrow_dataset_reads_the_recording_as_is(events: tuple[Event, ...], recorded: Path) -> None:
    trades = ds.dataset(recorded / "trades", format="parquet", partitioning="hive").to_table()
    assert trades.num_rows == 19904
    assert set(trades.column("exchange").to_pylist()) == {"binance"}
    assert set(trades.column("symbol").to_pylist()) == {"BTC_USDT"}
    signed = sum(a if s == "buy" else -a for a, s in zip(trades.column("amount").to_pylist(),
                                                        trades.column("side").to_pylist(), strict=True))
    assert signed == pytest.approx(-28.93328, abs=1e-6)  # CVD of ../shared/README.md


def test_list_streams_span_and_content_key(events: tuple[Event, ...], recorded: Path, tmp_path: Path) -> None:
    assert list_streams(recorded) == [("binance", "BTC/USDT")]
    ts = [e.ts_us for e in events]
    assert stream_span(recorded, "binance", "BTC/USDT") == (min(ts), max(ts))
    key = content_key(recorded, "binance", "BTC/USDT")
    assert key == content_key(recorded, "binance", "BTC/USDT")
    copy = tmp_path / "copy"
    with RecordingWriter(copy, flush_by_time=False) as writer:
        writer.write_many(events[:1000])
    before = content_key(copy, "binance", "BTC/USDT")
    with RecordingWriter(copy, flush_by_time=False) as writer:  # a second run appends files
        writer.write_many(events[1000:1100])
    assert content_key(copy, "binance", "BTC/USDT") != before
    assert list(read_events(copy)) == list(events[:1100])


# ---- ordering across files, partitions, tables and streams ----------------------------------------------


def test_small_segments_give_many_files_read_back_in_written_order(events: tuple[Event, ...], tmp_path: Path) -> None:
    settings = RecordingSettings(segment_s=7.0, segment_rows=2000)
    with RecordingWriter(tmp_path, settings, flush_by_time=False) as writer:
        writer.write_many(events)
    files = parquet_files(tmp_path)
    assert len(files) > 200
    for path in files:
        t = pq.read_table(path, columns=["local_timestamp", "seq"])
        lts = t.column("local_timestamp").to_pylist()
        assert lts[-1] - lts[0] < 7_000_000
        # Closed once it reached segment_rows: only the last message may overshoot (the snapshot has 2000 rows).
        assert t.num_rows < 2000 + 2000
    assert list(read_events(tmp_path)) == list(events)
    assert list(read_events(tmp_path, chunk_rows=7)) == list(events)  # messages span batches


def test_two_streams_merge_in_written_order_and_filter(events: tuple[Event, ...], tmp_path: Path) -> None:
    # A second, real-shaped stream interleaved in receive order: the same trades seen on binanceus.
    mixed: list[Event] = []
    for e in events[:20000]:
        mixed.append(e)
        if isinstance(e, Trade):
            mixed.append(dataclasses.replace(e, exchange="binanceus", trade_id="us" + e.trade_id))
    with RecordingWriter(tmp_path, RecordingSettings(segment_s=30.0), flush_by_time=False) as writer:
        writer.write_many(mixed)
    assert list_streams(tmp_path) == [("binance", "BTC/USDT"), ("binanceus", "BTC/USDT")]
    assert list(read_events(tmp_path)) == mixed
    us = list(read_events(tmp_path, exchange="binanceus"))
    assert us == [e for e in mixed if e.exchange == "binanceus"] and len(us) > 1000
    assert list(read_events(tmp_path, exchange="binance", symbol="BTC/USDT")) == list(events[:20000])
    with pytest.raises(HeliosError, match=r"has no data for binance ETH/USDT; it has: binance BTC/USDT, binanceus"):
        read_events(tmp_path, exchange="binance", symbol="ETH/USDT")


def test_time_filter_is_half_open_on_exchange_timestamp(events: tuple[Event, ...], recorded: Path) -> None:
    ts = sorted({e.ts_us for e in events})
    start, end = ts[len(ts) // 3], ts[2 * len(ts) // 3]
    got = list(read_events(recorded, start_us=start, end_us=end, chunk_rows=1000))
    want = [e for e in events if start <= e.ts_us < end]
    assert got == want and len(want) > 20000
    assert min(e.ts_us for e in got) == start and max(e.ts_us for e in got) < end


def test_chunked_reading_memory_is_bounded_by_the_chunk_not_the_dataset(recorded: Path) -> None:
    gc.collect()
    tracemalloc.start()
    try:
        held = list(read_events(recorded))
        _, whole = tracemalloc.get_traced_memory()
        del held
        gc.collect()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        n = 0
        # Arrow's buffers are not seen by tracemalloc: sample them, above what other tests in this process
        # still hold in Arrow memory.
        arrow_base = pa.total_allocated_bytes()
        arrow_peak = 0
        for _ in read_events(recorded, chunk_rows=256):
            n += 1
            if n % 64 == 0:
                arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - arrow_base)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 99574
    streaming = peak - base
    # Measured: 73 MB of Python objects held as a list; streamed, 0.6 MB of Python objects (the 1000-level
    # snapshot dominates) and 2.6 MB of Arrow buffers (one row group's column chunks at a time).
    assert whole > 30_000_000
    assert streaming < whole / 30
    assert arrow_peak < whole / 10


# ---- determinism -------------------------------------------------------------------------------------------


def test_importing_the_same_events_twice_gives_byte_identical_files(events: tuple[Event, ...], tmp_path: Path) -> None:
    settings = RecordingSettings(segment_s=60.0)
    with RecordingWriter(tmp_path / "a", settings, flush_by_time=False) as writer:
        writer.write_many(events)
    with RecordingWriter(tmp_path / "b", settings, flush_by_time=False) as writer:
        writer.write_many(events)
    a, b = file_bytes(tmp_path / "a"), file_bytes(tmp_path / "b")
    assert len(a) > 30 and a == b


def test_intermediate_flushes_do_not_change_the_final_files(events: tuple[Event, ...], tmp_path: Path) -> None:
    part = events[:30000]
    with RecordingWriter(tmp_path / "plain", flush_by_time=False) as writer:
        writer.write_many(part)
    ticks = iter(range(10**9))
    # A clock that advances 1 ms per reading: a time flush every 2000 writes, each rewriting open segments.
    flushing = RecordingSettings(flush_interval_s=2.0)
    with RecordingWriter(tmp_path / "flushed", flushing, clock=lambda: next(ticks) / 1000) as writer:
        for i, e in enumerate(part):
            writer.write(e)
            if i % 4999 == 0:
                writer.flush()
    plain, flushed = file_bytes(tmp_path / "plain"), file_bytes(tmp_path / "flushed")
    assert flushed.keys() == plain.keys()
    assert [k for k in plain if plain[k] != flushed[k]] == []


def test_segment_buffers_come_from_the_system_allocator_not_pyarrows_default_pool(
    events: tuple[Event, ...], tmp_path: Path
) -> None:
    # Why: mimalloc (pyarrow's default) kept rewritten segments' pages resident in a live recorder; see writer.py.
    default, system = pa.default_memory_pool(), pa.system_memory_pool()
    before_default, before_system = default.bytes_allocated(), system.bytes_allocated()
    writer = RecordingWriter(tmp_path, RecordingSettings(segment_s=3600.0), flush_by_time=False)
    writer.write_many(events[:20000])
    writer.flush()  # segments sealed into Arrow batches and written, still open
    held = system.bytes_allocated() - before_system
    assert held > 100_000  # the open segments' columns
    assert default.bytes_allocated() == before_default
    writer.close()
    assert system.bytes_allocated() <= before_system + held // 10


# ---- durability and commits -------------------------------------------------------------------------------


def test_open_writer_leaves_complete_files_and_a_readable_committed_prefix(
    events: tuple[Event, ...], tmp_path: Path
) -> None:
    ticks = iter(range(10**9))
    writer = RecordingWriter(tmp_path, RecordingSettings(flush_interval_s=1.0), clock=lambda: next(ticks) / 1000)
    writer.write_many(events[:5500])  # time flushes after writes 999, 1999, ... 4999
    for path in parquet_files(tmp_path):
        pq.read_table(path)
    assert list(read_events(tmp_path)) == list(events[:5000])
    writer.close()
    assert list(read_events(tmp_path)) == list(events[:5500])
    run = json.loads((tmp_path / "_runs" / f"{writer.run_id}.json").read_text())
    assert run == {"closed": True, "committed_seq": 5499, "format_version": 1, "run": writer.run_id}


def test_rows_past_the_commit_of_a_torn_flush_are_not_read(events: tuple[Event, ...], tmp_path: Path) -> None:
    # The disk state of a kill between two renames of one flush: the trades file already holds events
    # 3000-5999, the book and bbo files do not, and the run commit still says 2999.
    writer = RecordingWriter(tmp_path, flush_by_time=False)
    writer.write_many(events[:3000])
    writer.flush()
    writer.write_many(events[3000:6000])
    writer._write_segment(writer._open[("trades", "binance", "BTC/USDT")])  # the first rename of the flush
    raw = ds.dataset(tmp_path / "trades", format="parquet", partitioning="hive").to_table()
    assert max(raw.column("seq").to_pylist()) > 2999  # Parquet-level readers do see the torn rows
    assert list(read_events(tmp_path)) == list(events[:3000])
    committed_ts = [e.ts_us for e in events[:3000]]
    assert stream_span(tmp_path, "binance", "BTC/USDT") == (min(committed_ts), max(committed_ts))
    assert max(e.ts_us for e in events[3000:6000] if isinstance(e, Trade)) > max(committed_ts)  # torn rows dropped


def test_temp_files_of_a_writer_are_ignored(recorded: Path, tmp_path: Path, events: tuple[Event, ...]) -> None:
    root = tmp_path / "r"
    with RecordingWriter(root, flush_by_time=False) as writer:
        writer.write_many(events[:2000])
    part = next(p.parent for p in parquet_files(root) if "trades" in p.parts)
    (part / ".0000000000000000-000000000000.4242.tmp").write_bytes(b"PAR1 half a file")
    assert list(read_events(root)) == list(events[:2000])


def test_empty_book_message_and_gaps_round_trip(tmp_path: Path) -> None:
    written: list[Event] = [
        BookSnapshot("binanceusdm", "BTC/USDT:USDT", 10, 20, 7, ((100.5, 1.0),), ()),
        BookDelta("binanceusdm", "BTC/USDT:USDT", 30, 40, 8, 9, 7, (), ()),  # no levels: ids must survive
        FeedGap("binanceusdm", "BTC/USDT:USDT", 50, 60, "reconnect"),
        BookDelta("binanceusdm", "BTC/USDT:USDT", 70, 80, 10, 12, 9, ((100.5, 0.0),), ((101.0, 2.5),)),
    ]
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:
        writer.write_many(written)
    assert list(read_events(tmp_path)) == written
    assert (tmp_path / "gaps" / "exchange=binanceusdm" / "symbol=BTC_USDT_USDT" / "date=1970-01-01").is_dir()


def test_restarted_writer_adds_files_and_never_rewrites_old_ones(events: tuple[Event, ...], tmp_path: Path) -> None:
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:
        writer.write_many(events[:4000])
    old = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:
        writer.write_many(events[4000:8000])
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in old} == old
    assert len(list(tmp_path.rglob("*.parquet"))) > len([p for p in old if p.suffix == ".parquet"])
    assert len(list((tmp_path / "_runs").glob("*.json"))) == 2
    assert list(read_events(tmp_path)) == list(events[:8000])


def test_colliding_file_name_gets_a_new_name_never_an_overwrite(events: tuple[Event, ...], tmp_path: Path) -> None:
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:
        writer.write_many(events[:100])
    before = {p: p.read_bytes() for p in parquet_files(tmp_path)}
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:  # the same input again: same names
        writer.write_many(events[:100])
    assert {p: p.read_bytes() for p in before} == before
    assert len(parquet_files(tmp_path)) == 2 * len(before)
    assert all(p.with_name(p.stem + "-1.parquet").exists() for p in before)
    assert sorted(p.name for p in (tmp_path / "_runs").iterdir()) == [
        f"{events[0].local_ts_us:016d}-1.json", f"{events[0].local_ts_us:016d}.json"]


# ---- errors ------------------------------------------------------------------------------------------------


def test_a_folder_that_is_not_a_recording_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HeliosError, match=r"is not a Helios recording: no book/, trades/ or bbo/ folder; record "
                                          r"with 'helios record' or import with 'helios import'"):
        read_events(tmp_path)  # at the call, before any iteration
    with pytest.raises(HeliosError, match="is not a Helios recording"):
        list_streams(tmp_path / "missing")


def test_a_recording_killed_before_its_first_flush_is_empty_not_an_error(tmp_path: Path) -> None:
    RecordingWriter(tmp_path)  # never written, never closed
    assert list_streams(tmp_path) == []
    assert list(read_events(tmp_path)) == []


def test_events_out_of_receive_order_are_refused(events: tuple[Event, ...], tmp_path: Path) -> None:
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:
        writer.write(events[10])
        with pytest.raises(HeliosError, match="must be written in receive order"):
            writer.write(events[0])


def test_a_damaged_parquet_file_is_named_in_the_error(events: tuple[Event, ...], tmp_path: Path) -> None:
    with RecordingWriter(tmp_path, flush_by_time=False) as writer:
        writer.write_many(events[:100])
    victim = parquet_files(tmp_path)[0]
    os.chmod(victim, 0o644)
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(HeliosError, match=f"cannot read '{victim}'.*move it out of the recording"):
        list(read_events(tmp_path))
