"""The tardis.dev CSV importer on the format samples in ../shared/data/tardis-samples (read in place: LGPL)
and on small CSVs written here for the rules the samples do not exercise."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from helios_orderflow.core.errors import InputError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Trade
from helios_orderflow.importers import ImportStats, iter_import
from helios_orderflow.importers.tardis import iter_events, unified_symbol
from helios_orderflow.recording.audit import inspect_events


@pytest.fixture(scope="session")
def samples(shared_data: Path) -> Path:
    return shared_data / "tardis-samples"


def _import(paths, **options):
    stats = ImportStats()
    return list(iter_events(paths, progress=False, stats=stats, **options)), stats


def test_incremental_book_sample_is_one_snapshot_of_fifteen_asks(samples):
    events, stats = _import([samples / "deribit_incremental_book_L2_BTC-PERPETUAL.csv"])
    assert stats.lines == 15 and stats.skipped_total == 0
    (snap,) = events
    assert isinstance(snap, BookSnapshot)
    assert (snap.exchange, snap.symbol) == ("deribit", "BTC/USD:BTC")
    assert (snap.ts_us, snap.local_ts_us, snap.update_id) == (1585699200245000, 1585699200355684, -1)
    assert snap.bids == ()
    assert len(snap.asks) == 15
    assert snap.asks[0] == (6421.5, 18640.0) and snap.asks[-1] == (6428.5, 39950.0)
    assert sum(q for _, q in snap.asks) == 317490.0  # the column sum of the CSV
    report = inspect_events(events)[("deribit", "BTC/USD:BTC")]
    assert report.best_ask == [6421.5, 18640.0] and report.best_bid is None


def test_trades_sample_gives_ten_taker_sells(samples):
    events, _ = _import([samples / "bitmex_trades_XBTUSD.csv"])
    assert len(events) == 10 and all(isinstance(e, Trade) for e in events)
    assert {(e.exchange, e.symbol, e.side, e.price) for e in events} == {("bitmex", "BTC/USD:BTC", "sell", 8531.5)}
    assert sum(e.amount for e in events) == 2161.0
    assert events[0].trade_id == "ccc3c1fa-212c-e8b0-1706-9b9c4f3d5ecf" and events[0].amount == 2152.0
    assert len({e.trade_id for e in events}) == 10
    report = inspect_events(events)[("bitmex", "BTC/USD:BTC")]
    assert report.taker_sell == 2161.0 and report.cvd == -2161.0


@pytest.mark.parametrize("depth", [5, 25])
def test_book_snapshot_samples_give_one_top_n_snapshot_per_row(samples, depth):
    events, _ = _import([samples / f"binance-futures_book_snapshot_{depth}_BTCUSDT.csv"])
    assert len(events) == 10 and all(isinstance(e, BookSnapshot) for e in events)
    first = events[0]
    assert (first.exchange, first.symbol) == ("binanceusdm", "BTC/USDT:USDT")
    assert len(first.bids) == depth and len(first.asks) == depth
    assert first.bids[0] == (11657.07, 10.896) and first.asks[0] == (11657.08, 1.714)
    assert all(a[0] < b[0] for a, b in zip(first.asks, first.asks[1:], strict=False))
    assert all(a[0] > b[0] for a, b in zip(first.bids, first.bids[1:], strict=False))


def test_quotes_sample_gives_best_bid_offers(samples):
    events, _ = _import([samples / "huobi-dm-swap_quotes_BTC-USD.csv"])
    assert len(events) == 10 and all(isinstance(e, BestBidOffer) for e in events)
    q = events[0]
    assert (q.exchange, q.symbol, q.update_id) == ("htx", "BTC/USD:BTC", -1)
    assert (q.bid_price, q.bid_amount, q.ask_price, q.ask_amount) == (8629.2, 806.0, 8629.3, 5494.0)


def test_files_are_merged_by_local_timestamp(samples):
    paths = [samples / "bitmex_trades_XBTUSD.csv", samples / "deribit_incremental_book_L2_BTC-PERPETUAL.csv",
             samples / "huobi-dm-swap_quotes_BTC-USD.csv"]
    events = list(iter_import("tardis", paths, progress=False))
    assert len(events) == 21
    times = [e.local_ts_us for e in events]
    assert times == sorted(times)


HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"


def _write(path: Path, text: str, gz: bool = False) -> Path:
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_rows_with_one_local_timestamp_form_one_message_and_a_new_snapshot_resets_the_book(tmp_path):
    rows = [
        "binance,BTCUSDT,1000,1100,true,bid,100.0,1",
        "binance,BTCUSDT,1000,1100,true,bid,99.5,2",
        "binance,BTCUSDT,1000,1100,true,ask,101.0,3",
        "binance,BTCUSDT,1200,1300,false,bid,100.5,4",
        "binance,BTCUSDT,1201,1300,false,ask,101.0,0",
        "binance,BTCUSDT,1201,1300,false,ask,102.0,5",
        "binance,BTCUSDT,1400,1500,false,bid,100.0,0",
        "binance,BTCUSDT,2000,2100,true,bid,90.0,7",
        "binance,BTCUSDT,2000,2100,true,ask,95.0,8",
    ]
    path = _write(tmp_path / "binance_incremental_book_L2_BTCUSDT.csv.gz", HEADER + "\n".join(rows) + "\n", gz=True)
    events, stats = _import([path])
    assert [type(e) for e in events] == [BookSnapshot, BookDelta, BookDelta, BookSnapshot]
    assert stats.lines == 9
    snap, d1, d2, snap2 = events
    assert snap.bids == ((100.0, 1.0), (99.5, 2.0)) and snap.asks == ((101.0, 3.0),)
    assert d1.bids == ((100.5, 4.0),) and d1.asks == ((101.0, 0.0), (102.0, 5.0))
    assert d1.ts_us == 1201 and d1.local_ts_us == 1300 and d1.update_id == -1
    assert d2.bids == ((100.0, 0.0),)
    assert snap2.bids == ((90.0, 7.0),) and snap2.asks == ((95.0, 8.0),)
    report = inspect_events(events[:3])[("binance", "BTC/USDT")]
    assert report.best_bid == [100.5, 4.0] and report.best_ask == [102.0, 5.0]
    final = inspect_events(events)[("binance", "BTC/USDT")]
    assert final.best_bid == [90.0, 7.0] and final.best_ask == [95.0, 8.0] and final.crossed == 0


def test_explicit_symbol_is_used_and_a_second_source_symbol_is_an_error(tmp_path):
    rows = ["ftx,BTC-PERP,1,1,false,bid,1,1", "ftx,ETH-PERP,2,2,false,bid,1,1"]
    path = _write(tmp_path / "ftx.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"ftx\.csv:2: cannot map ftx 'BTC-PERP'"):
        _import([path])
    with pytest.raises(InputError, match=r"ftx\.csv:3: second symbol 'ETH-PERP'"):
        _import([path], symbol="BTC/USD:USD", exchange="ftx")


def test_unified_symbols_are_inferred_per_venue():
    assert unified_symbol("binance-delivery", "BTCUSD_PERP") == "BTC/USD:BTC"
    assert unified_symbol("binance-futures", "ETHUSDT") == "ETH/USDT:USDT"
    assert unified_symbol("deribit", "ETH-25SEP20") == "ETH/USD:ETH-200925"
    assert unified_symbol("deribit", "BTC_USDC-PERPETUAL") == "BTC/USDC:USDC"
    assert unified_symbol("okex-swap", "BTC-USDT-SWAP") == "BTC/USDT:USDT"
    assert unified_symbol("huobi-dm-linear-swap", "BTC-USDT") == "BTC/USDT:USDT"
    assert unified_symbol("coinbase", "BTC-USD") == "BTC/USD"
    assert unified_symbol("kraken", "XBT/EUR") == "BTC/EUR"


def test_truncated_gzip_is_an_input_error_naming_the_file(tmp_path):
    rows = "".join(f"binance,BTCUSDT,{i},{i},false,bid,{100 + i % 50},{i}\n" for i in range(20000))
    good = _write(tmp_path / "good.csv.gz", HEADER + rows, gz=True)
    data = good.read_bytes()
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"bad\.csv\.gz:\d+: file is truncated or corrupt"):
        _import([bad])


def test_malformed_row_is_an_input_error_with_file_and_line_or_a_counted_skip(tmp_path):
    rows = ["binance,BTCUSDT,1,1,false,bid,100,1", "binance,BTCUSDT,2,2,false,middle,100,1",
            "binance,BTCUSDT,3,3,false,ask,101,1"]
    path = _write(tmp_path / "b.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"b\.csv:3: is_snapshot 'false' must be true/false and side 'middle'"):
        _import([path])
    events, stats = _import([path], strict=False)
    assert len(events) == 2 and stats.skipped_total == 1
    assert next(iter(stats.first_skip.values())).endswith("b.csv:3")


def test_out_of_order_local_timestamp_is_an_input_error_with_file_and_line(tmp_path):
    rows = ["bitmex,XBTUSD,5,50,a,buy,1,1", "bitmex,XBTUSD,6,40,b,buy,1,1"]
    path = _write(tmp_path / "t.csv", "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                  + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"t\.csv:3: local_timestamp 40 is earlier than the previous row's 50"):
        _import([path])


def test_unsupported_data_type_is_an_input_error(tmp_path):
    path = _write(tmp_path / "x.csv", "exchange,symbol,timestamp,local_timestamp,funding_rate\nbinance,X,1,1,0\n")
    with pytest.raises(InputError, match="unsupported tardis data type"):
        _import([path])


def test_a_snapshot_header_naming_an_absurd_level_is_an_input_error_not_an_endless_loop(tmp_path):
    """A generated header naming level 10^23 once made every row loop over 10^23 levels (make test hung
    for 22 minutes). Levels are now visited as the header names them, and absurd ones are refused."""
    head = "exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount"
    row = "binance-futures,BTCUSDT,1,1,100.5,2"
    bad = _write(tmp_path / "bad.csv", f"{head},bids[{10**23}].price,bids[{10**23}].amount\n{row},100,1\n")
    absurd = r"bad\.csv:1: book_snapshot column 'bids\[10{23}\]\.price' names level 10{23}"
    with pytest.raises(InputError, match=absurd):
        _import([bad])
    # A sparse header within bounds costs one step per named column: level 99,999 is read, not walked to.
    sparse = _write(tmp_path / "sparse.csv", f"{head},bids[99999].price,bids[99999].amount\n{row},100,1\n")
    (snap,), _ = _import([sparse])
    assert snap.bids == ((100.0, 1.0),) and snap.asks == ((100.5, 2.0),)
