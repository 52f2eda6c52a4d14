"""The cryptofeed importer (and the Binance/Kraken/OKX message parsers under it) on the real captures in
../shared/data/cryptofeed, on the bundled fixtures, and on broken input."""

from __future__ import annotations

import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from helios_orderflow.book.sync import BookSync, DeltaResult
from helios_orderflow.core.errors import InputError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, FeedGap, Trade
from helios_orderflow.importers import ImportStats, iter_import
from helios_orderflow.importers.binance_messages import BinanceMessageError, parse_binance_message
from helios_orderflow.importers.checksums import kraken_checksum, okx_checksum
from helios_orderflow.importers.cryptofeed import find_captures, iter_events, venue_from_url
from helios_orderflow.recording.audit import inspect_events

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cryptofeed"


@pytest.fixture(scope="session")
def captures(shared_data: Path) -> Path:
    return shared_data / "cryptofeed"


def _import(paths, **options):
    stats = ImportStats()
    events = list(iter_events(paths, progress=False, stats=stats, **options))
    return events, stats


# ---------------------------------------------------------------------------------------------------------
# Binance family: every stream rebuilds with no gaps and matches every checkable bookTicker

# capture -> (exchange, symbols, depth diffs, bookTicker, trades, minimum bbo checks over the capture)
BINANCE_CAPTURES = {
    "BINANCE": (
        "binance", {"NKN/USDT", "BLZ/ETH", "LRC/BTC", "RUNE/EUR"}, 177, 84, 2, 25,
    ),
    "BINANCE_US": (
        "binanceus", {"CRV/USDT", "COMP/USDT", "OMG/BUSD", "ZRX/USDT"}, 336, 128, 11, 50,
    ),
    "BINANCE_FUTURES": (
        "binanceusdm", {"SUSHI/USDT:USDT", "AKRO/USDT:USDT", "KEEP/USDT:USDT", "CTK/USDT:USDT"}, 764, 613, 91, 45,
    ),
    "BINANCE_DELIVERY": (
        "binancecoinm",
        {
            "LINK/USD:LINK-211231", "LINK/USD:LINK", "TRX/USD:TRX", "ETC/USD:ETC", "BTC/USD:BTC-211231",
            "XRP/USD:XRP", "EOS/USD:EOS", "BCH/USD:BCH", "BCH/USD:BCH-210924", "ETH/USD:ETH-210924",
        },
        2047, 2240, 51, 200,
    ),
}


def _futures_first_diff_ending_at_snapshot_is_dropped() -> bool:
    """True while sequence.BookSync drops a futures diff with u == lastUpdateId. Binance's futures
    procedure keeps it ("drop u < lastUpdateId; the first event has U <= lastUpdateId <= u"), and the next
    diff's pu is that u, so dropping it turns a clean stream into a gap (3 USD-M symbols of
    BINANCE_FUTURES and 5 COIN-M symbols of BINANCE_DELIVERY have exactly this diff)."""
    sync = BookSync()
    sync.on_snapshot(BookSnapshot("binanceusdm", "X/USDT:USDT", 0, 0, 10, ((1.0, 1.0),), ((2.0, 1.0),)))
    delta = BookDelta("binanceusdm", "X/USDT:USDT", 0, 0, 5, 10, 4, (), ())
    return sync.on_delta(delta) is DeltaResult.STALE


@pytest.mark.parametrize("name", list(BINANCE_CAPTURES))
def test_binance_capture_rebuilds_every_book_with_no_gap_and_no_bbo_mismatch(captures, name):
    exchange, symbols, diffs, tickers, trades, min_checks = BINANCE_CAPTURES[name]
    if name in ("BINANCE_FUTURES", "BINANCE_DELIVERY") and _futures_first_diff_ending_at_snapshot_is_dropped():
        pytest.xfail("sequence.BookSync drops the futures diff with u == lastUpdateId (must keep it: u < L is stale)")
    events, stats = _import([captures / name])
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["BookDelta"] == diffs
    assert kinds["BestBidOffer"] == tickers
    assert kinds["Trade"] == trades
    assert kinds["BookSnapshot"] == len(symbols)  # one REST snapshot per symbol
    assert set(stats.skipped) == {"binance kline message (no order-flow event)"}

    reports = inspect_events(events)
    assert {sym for (ex, sym) in reports} == symbols
    assert {ex for (ex, sym) in reports} == {exchange}
    for (_, symbol), r in reports.items():
        assert r.seq_gaps == 0, f"{name} {symbol}: {r.last_gap}"
        assert r.crossed == 0, symbol
        assert r.in_sync, symbol
        assert r.bbo_mismatches == 0, f"{name} {symbol}: {r.first_mismatch}"
    checks = sum(r.bbo_checks for r in reports.values())
    assert checks >= min_checks
    print(f"{name}: {len(events)} events, {checks} bbo checks, 0 mismatches, 0 gaps")


def test_events_come_out_in_receive_order_across_websocket_and_rest_files(captures):
    events, _ = _import([captures / "BINANCE_FUTURES.ws.1.0", captures / "BINANCE_FUTURES.http.0.0"])
    times = [e.local_ts_us for e in events]
    assert times == sorted(times)
    snaps = [e for e in events if isinstance(e, BookSnapshot)]
    assert [s.symbol for s in snaps] == ["SUSHI/USDT:USDT", "AKRO/USDT:USDT", "KEEP/USDT:USDT", "CTK/USDT:USDT"]
    # The REST line's receive time, exactly: 1626992741.301402 s.
    assert snaps[0].local_ts_us == 1626992741301402 and snaps[0].update_id == 600859605926
    assert snaps[0].ts_us == 1626992741264000  # futures snapshots carry E


def test_futures_diffs_carry_pu_and_spot_diffs_do_not(captures):
    futures, _ = _import([captures / "BINANCE_FUTURES.ws.1.0"])
    spot, _ = _import([captures / "BINANCE.ws.1.0"])
    first = next(e for e in futures if isinstance(e, BookDelta))
    assert (first.first_update_id, first.update_id, first.prev_update_id) == (600859599090, 600859600917, 600859598061)
    assert first.ts_us == 1626992741037000 and first.local_ts_us == 1626992741081672
    assert all(e.prev_update_id == -1 for e in spot if isinstance(e, BookDelta))


def test_coinm_symbols_come_from_exchange_info(captures):
    events, _ = _import([captures / "BINANCE_DELIVERY"])
    trade = next(e for e in events if isinstance(e, Trade))
    assert trade.symbol == "BCH/USD:BCH" and trade.side == "sell" and trade.trade_id == "11285749"
    assert trade.ts_us == 1626916403852000  # T, not E


# ---------------------------------------------------------------------------------------------------------
# Kraken and OKX: checksums verified on every update


def test_kraken_capture_verifies_the_checksum_of_every_book_update(captures):
    events, stats = _import([captures / "KRAKEN"])
    updates = [e for e in events if isinstance(e, BookDelta)]
    snaps = [e for e in events if isinstance(e, BookSnapshot)]
    assert len(snaps) == 10 and len(updates) == 4269
    assert stats.checksums_verified == 4269
    assert not any(isinstance(e, FeedGap) for e in events)
    assert set(stats.skipped) == {"kraken ticker message (no order-flow event)"}
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) == 10
    assert Counter(t.symbol for t in trades) == {"SC/EUR": 6, "XMR/USD": 4}
    assert trades[0].side == "sell" and trades[0].price == 354.11 and trades[0].ts_us == 1618678142557535
    reports = inspect_events(events)
    assert {s for (_, s) in reports} >= {"BTC/CHF", "KSM/BTC", "ADA/BTC", "OCEAN/BTC", "XMR/USD"}
    for r in reports.values():
        assert r.crossed == 0 and r.seq_gaps == 0


def test_okx_capture_verifies_the_checksum_of_every_snapshot_and_update(captures):
    events, stats = _import([captures / "OKX"])
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["BookSnapshot"] == 3 and kinds["BookDelta"] == 287
    assert stats.checksums_verified == 290
    assert kinds["FeedGap"] == 0
    assert kinds["Trade"] == 74
    reports = inspect_events(events)
    assert set(reports) == {("okx", "BTC/USD:BTC-220527"), ("okx", "UNI/USD:UNI"), ("okx", "BTC/USDT")}
    assert all(r.crossed == 0 for r in reports.values())


def test_bundled_fixtures_import_with_every_checksum_verified():
    events, stats = _import([FIXTURES])
    kinds = Counter(type(e).__name__ for e in events)
    # Kraken XMR/USD 846 + OMG/USD 573 updates, OKX 3 snapshots + 287 updates.
    assert stats.checksums_verified == 846 + 573 + 290
    assert kinds["FeedGap"] == 0
    reports = inspect_events(events)
    for symbol in ["COMP/USDT", "OMG/BUSD", "CRV/USDT", "ZRX/USDT"]:
        r = reports[("binanceus", symbol)]
        assert r.seq_gaps == 0 and r.bbo_mismatches == 0 and r.in_sync
    assert sum(r.bbo_checks for (ex, _), r in reports.items() if ex == "binanceus") >= 50


def _rewrite(src: Path, dst: Path, edit) -> None:
    with gzip.open(src, "rt") as f:
        lines = f.read().split("\n")
    with gzip.open(dst, "wt") as f:
        f.write("\n".join(edit(lines)))


def test_kraken_corrupted_level_fails_the_checksum_and_is_not_applied(tmp_path):
    target = '[992,{"b":[["354.15000000","5.00000000","1618678133.365913"]],"c":"2583817756"},"book-1000","XMR/USD"]'

    def corrupt(lines):
        hits = [i for i, line in enumerate(lines) if line.endswith(target)]
        assert len(hits) == 1
        lines[hits[0]] = lines[hits[0]].replace('"5.00000000"', '"6.00000000"')
        return lines

    _rewrite(FIXTURES / "KRAKEN.ws.50.0.gz", tmp_path / "KRAKEN.ws.50.0.gz", corrupt)
    events, stats = _import([tmp_path / "KRAKEN.ws.50.0.gz"])
    xmr = [e for e in events if e.symbol == "XMR/USD"]
    gaps = [e for e in xmr if isinstance(e, FeedGap)]
    assert len(gaps) == 1 and "checksum mismatch" in gaps[0].reason
    assert [type(e) for e in xmr] == [BookSnapshot, FeedGap]  # the bad update and all after it are dropped
    assert stats.skipped["kraken book checksum mismatch (update dropped, book out of sync)"] == 1
    assert stats.skipped["kraken book update while out of sync after a checksum mismatch"] == 845
    # The other pair is untouched: every one of its updates still verifies.
    assert stats.checksums_verified == 573
    reports = inspect_events(events)
    assert reports[("kraken", "XMR/USD")].declared_gaps == 1
    snap = xmr[0]
    assert reports[("kraken", "XMR/USD")].best_bid == list(snap.bids[0])


def test_okx_corrupted_level_fails_the_checksum_and_is_not_applied(tmp_path):
    def corrupt(lines):
        i = next(i for i, line in enumerate(lines) if '"instId":"UNI-USD-SWAP"},"action":"update"' in line)
        ts, _, payload = lines[i].partition(": ")
        msg = json.loads(payload)
        msg["data"][0]["bids"][0][1] = str(int(msg["data"][0]["bids"][0][1]) + 1)
        lines[i] = f"{ts}: {json.dumps(msg, separators=(',', ':'))}"
        return lines

    _rewrite(FIXTURES / "OKX.ws.1.0.gz", tmp_path / "OKX.ws.1.0.gz", corrupt)
    events, stats = _import([tmp_path / "OKX.ws.1.0.gz"])
    uni = [e for e in events if e.symbol == "UNI/USD:UNI" and not isinstance(e, Trade)]
    assert [type(e) for e in uni] == [BookSnapshot, FeedGap]
    assert stats.skipped["okx book checksum mismatch (message dropped, book out of sync)"] == 1
    assert stats.skipped["okx book update while out of sync after a checksum mismatch"] == 91
    assert stats.checksums_verified == 290 - 92  # the other two instruments still verify every message


def test_checksums_are_computed_from_the_venue_strings():
    asks = [("0.05005", "0.00000500")]
    bids = [("0.05000", "0.00000500")]
    # "0.05005" -> "5005", "0.00000500" -> "500"
    import zlib

    assert kraken_checksum(asks, bids) == zlib.crc32(b"50055005000500")
    assert kraken_checksum([("0.05005", "0.000005")], bids) != kraken_checksum(asks, bids)
    # OKX interleaves bid and ask, signed result.
    value = okx_checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8")])
    expected = zlib.crc32(b"3366.1:7:3366.8:9:3368:8")
    assert value == (expected - (1 << 32) if expected >= 1 << 31 else expected)


# ---------------------------------------------------------------------------------------------------------
# Binance messages (the functions binance-raw shares)


def test_binance_trade_with_buyer_maker_is_a_taker_sell_and_agg_trade_uses_the_agg_id():
    trade = {"e": "trade", "E": 1, "s": "BTCUSDT", "t": 12, "p": "1.5", "q": "2", "T": 1000, "m": True}
    agg = {"e": "aggTrade", "E": 1, "s": "BTCUSDT", "a": 7, "p": "1.5", "q": "2", "f": 1, "l": 2, "T": 2000, "m": False}
    (t,) = parse_binance_message({"stream": "btcusdt@trade", "data": trade}, exchange="binance", local_ts_us=5)
    (a,) = parse_binance_message(agg, exchange="binance", local_ts_us=5)
    assert (t.side, t.trade_id, t.ts_us, t.local_ts_us, t.symbol) == ("sell", "12", 1_000_000, 5, "BTC/USDT")
    assert (a.side, a.trade_id, a.ts_us) == ("buy", "7", 2_000_000)


def test_binance_spot_book_ticker_takes_the_receive_time_and_futures_ticker_takes_e():
    spot = {"u": 9, "s": "BTCUSDT", "b": "1", "B": "2", "a": "3", "A": "4"}
    fut = {**spot, "e": "bookTicker", "E": 1700, "T": 1600}
    (s,) = parse_binance_message(spot, exchange="binance", local_ts_us=42)
    (f,) = parse_binance_message(fut, exchange="binanceusdm", local_ts_us=42)
    assert isinstance(s, BestBidOffer) and s.ts_us == 42 and s.update_id == 9
    assert f.ts_us == 1_700_000 and f.symbol == "BTC/USDT:USDT"


def test_binance_kline_is_counted_and_unknown_or_broken_messages_raise():
    stats = ImportStats()
    kline = {"stream": "btcusdt@kline_1m", "data": {"e": "kline", "s": "BTCUSDT", "k": {}}}
    assert parse_binance_message(kline, exchange="binance", local_ts_us=1, stats=stats, where="f:3") == []
    assert stats.skipped == {"binance kline message (no order-flow event)": 1}
    assert stats.first_skip["binance kline message (no order-flow event)"] == "f:3"
    with pytest.raises(BinanceMessageError, match="unknown Binance event type 'mystery'"):
        parse_binance_message({"e": "mystery"}, exchange="binance", local_ts_us=1)
    with pytest.raises(BinanceMessageError, match="no 'u' field"):
        parse_binance_message({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "b": [], "a": []},
                              exchange="binance", local_ts_us=1)
    with pytest.raises(BinanceMessageError, match="without a symbol"):
        parse_binance_message({"lastUpdateId": 1, "bids": [], "asks": []}, exchange="binance", local_ts_us=1)


# ---------------------------------------------------------------------------------------------------------
# File conventions and bad input


def test_a_prefix_names_one_capture_and_a_directory_names_all(captures):
    (binance,) = find_captures([captures / "BINANCE"])
    assert binance.name == "BINANCE"
    assert [p.name for p in binance.ws] == ["BINANCE.ws.1.0"]
    assert [p.name for p in binance.http] == ["BINANCE.http.0.0"]
    assert [p.name for p in binance.meta] == ["BINANCE.0.gz"]
    names = sorted(c.name for c in find_captures([captures]))
    # ../shared/data/cryptofeed holds eight captures (../shared/README.md), Gate.io and KuCoin among them.
    assert names == ["BINANCE", "BINANCE_DELIVERY", "BINANCE_FUTURES", "BINANCE_US", "GATEIO", "KRAKEN", "KUCOIN",
                     "OKX"]
    assert [len(c.ws) for c in find_captures([captures / "KRAKEN"])] == [3]


def test_venue_is_read_from_the_url():
    assert venue_from_url("wss://stream.binance.com:9443/stream?streams=x") == "binance"
    assert venue_from_url("https://api.binance.us/api/v3/depth?symbol=X") == "binanceus"
    assert venue_from_url("wss://fstream.binance.com/stream") == "binanceusdm"
    assert venue_from_url("https://dapi.binance.com/dapi/v1/depth") == "binancecoinm"
    assert venue_from_url("wss://ws.kraken.com") == "kraken"
    assert venue_from_url("wss://ws.okx.com:8443/ws/v5/public") == "okx"
    assert venue_from_url("wss://ws-feed.exchange.coinbase.com") is None


def test_the_import_registry_reaches_this_importer():
    events = list(iter_import("cryptofeed", [FIXTURES / "BINANCE_US"], progress=False))
    assert len(events) == 475 + 4  # websocket events + one REST snapshot per symbol
    assert sum(isinstance(e, BookSnapshot) for e in events) == 4


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file, directory or capture prefix"):
        _import([tmp_path / "NOPE"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not a cryptofeed capture file"):
        _import([tmp_path / "notes.txt"])


def test_truncated_gzip_is_an_input_error_naming_the_file(tmp_path):
    data = (FIXTURES / "OKX.ws.1.0.gz").read_bytes()
    bad = tmp_path / "OKX.ws.1.0.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"OKX\.ws\.1\.0\.gz:\d+: file is truncated or corrupt"):
        _import([bad])


def _copy_plain(src: Path, dst: Path, edit) -> Path:
    with gzip.open(src, "rt") as f:
        lines = f.read().split("\n")
    dst.write_text("\n".join(edit(lines)))
    return dst


def test_malformed_line_is_an_input_error_with_file_and_line_or_a_counted_skip(tmp_path):
    path = _copy_plain(FIXTURES / "BINANCE_US.ws.1.0.gz", tmp_path / "BINANCE_US.ws.1.0",
                       lambda lines: [*lines[:10], lines[9].split(": ")[0] + ": {not json", *lines[10:]])
    with pytest.raises(InputError, match=r"BINANCE_US\.ws\.1\.0:11: not JSON"):
        _import([path])
    events, stats = _import([path], strict=False)
    assert stats.skipped["malformed or unknown message"] == 1
    assert stats.first_skip["malformed or unknown message"].endswith("BINANCE_US.ws.1.0:11")
    assert len(events) == 475  # every websocket event of the file (no REST file given)


def test_unknown_message_is_an_input_error_with_file_and_line(tmp_path):
    odd = ': {"stream":"x@y","data":{"e":"mystery","s":"CRVUSDT"}}'
    path = _copy_plain(FIXTURES / "BINANCE_US.ws.1.0.gz", tmp_path / "BINANCE_US.ws.1.0",
                       lambda lines: [*lines[:10], lines[9].split(": ")[0] + odd, *lines[10:]])
    with pytest.raises(InputError, match=r"BINANCE_US\.ws\.1\.0:11: unknown Binance event type 'mystery'"):
        _import([path])


def test_out_of_order_receive_time_is_an_input_error_with_file_and_line(tmp_path):
    def swap(lines):
        lines[20], lines[21] = lines[21], lines[20]
        return lines

    path = _copy_plain(FIXTURES / "BINANCE_US.ws.1.0.gz", tmp_path / "BINANCE_US.ws.1.0", swap)
    with pytest.raises(InputError, match=r"BINANCE_US\.ws\.1\.0:22: receive time .* is earlier"):
        _import([path])
    events, stats = _import([path], strict=False)
    assert stats.skipped["line out of receive-time order"] == 1
    assert len(events) == 474


def test_capture_without_rest_snapshot_is_reported(tmp_path):
    shutil.copy(FIXTURES / "BINANCE_US.ws.1.0.gz", tmp_path / "BINANCE_US.ws.1.0.gz")
    events, stats = _import([tmp_path / "BINANCE_US"])
    assert not any(isinstance(e, BookSnapshot) for e in events)
    reason = "book diffs without a REST depth snapshot (book cannot be aligned; pass the NAME.http.* file)"
    assert stats.skipped[reason] == 4


def test_kraken_book_is_truncated_to_the_subscribed_depth_and_the_truncation_is_emitted():
    from helios_orderflow.importers.kraken import KrakenParser

    def level(p: float, q: str = "1.00000000") -> list[str]:
        return [f"{p:.1f}", q, "1618678133.000001"]

    stats = ImportStats()
    parser = KrakenParser(stats)
    bids = [level(100.0 - i) for i in range(10)]  # 100 .. 91
    asks = [level(110.0 + i) for i in range(10)]  # 110 .. 119
    (snap,) = parser.on_message([1, {"as": asks, "bs": bids}, "book-10", "XBT/USD"], 1, "t:1")
    assert snap.symbol == "BTC/USD" and len(snap.bids) == 10 and snap.bids[0] == (100.0, 1.0)

    def expected(bid_prices: list[float]) -> str:
        return str(kraken_checksum([(a[0], a[1]) for a in asks], [(f"{p:.1f}", "1.00000000") for p in bid_prices]))

    # A better bid pushes 91 out of the 10 levels: Kraken sends no removal for it.
    after_insert = [101.0, *[100.0 - i for i in range(9)]]
    (d1,) = parser.on_message([1, {"b": [level(101.0)], "c": expected(after_insert)}, "book-10", "XBT/USD"], 2, "t:2")
    assert d1.bids == ((101.0, 1.0), (91.0, 0.0))
    # 101 goes away and Kraken fills the 10th level with 90.5; a book that kept 91 would now be wrong.
    after_delete = [*[100.0 - i for i in range(9)], 90.5]
    msg = [1, {"b": [level(101.0, "0.00000000"), level(90.5)], "c": expected(after_delete)}, "book-10", "XBT/USD"]
    (d2,) = parser.on_message(msg, 3, "t:3")
    assert isinstance(d2, BookDelta) and d2.bids == ((101.0, 0.0), (90.5, 1.0))
    assert stats.checksums_verified == 2 and parser.checksum_failures == 0


def test_symbol_and_exchange_options_keep_only_that_stream():
    events, stats = _import([FIXTURES], symbol="OMG/BUSD", exchange="binanceus")
    assert {(e.exchange, e.symbol) for e in events} == {("binanceus", "OMG/BUSD")}
    assert Counter(type(e).__name__ for e in events) == {"BookDelta": 159, "BestBidOffer": 58, "Trade": 11,
                                                         "BookSnapshot": 1}
    assert stats.events == len(events)


def test_a_capture_url_damaged_into_an_unparsable_host_is_an_unknown_venue_not_a_crash():
    from helios_orderflow.importers.cryptofeed import url_host, venue_from_url

    damaged = "wss://stream.binance.com:[]/stream?streams=nknusdt@depth@100ms"  # found by the importer fuzz test
    assert url_host(damaged) == "" and venue_from_url(damaged) is None
    assert venue_from_url("wss://stream.binance.com:9443/stream?streams=x") == "binance"
