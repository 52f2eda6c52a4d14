"""The binance-raw importer on the real BTCUSDT capture, and on broken input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from helios_orderflow.core.errors import InputError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Trade
from helios_orderflow.devtools.samples import BINANCE_BTCUSDT_FILES
from helios_orderflow.importers import ImportStats
from helios_orderflow.importers.binance_raw import iter_events
from helios_orderflow.recording.audit import inspect_events


@pytest.fixture(scope="module")
def btcusdt_report(btcusdt_files):
    stats = ImportStats()
    reports = inspect_events(iter_events(btcusdt_files, progress=False, stats=stats))
    return reports, stats


def test_both_files_import_as_one_stream_with_the_checked_figures(btcusdt_report):
    reports, stats = btcusdt_report
    assert list(reports) == [("binance", "BTC/USDT")]
    r = reports[("binance", "BTC/USDT")]
    assert r.seq_gaps == 0
    assert r.crossed == 0
    assert r.stale_dropped == 2
    assert r.snapshots == 1 and r.book_events == 6495
    assert r.bbo_events == 73174
    assert r.bbo_checks == 1072 and r.bbo_mismatches == 0
    assert r.trades == 19904
    assert r.taker_buy == pytest.approx(204.49112, abs=1e-6)
    assert r.taker_sell == pytest.approx(233.4244, abs=1e-6)
    assert r.cvd == pytest.approx(-28.93328, abs=1e-6)
    assert r.best_bid[0] == 61602.01 and r.best_ask[0] == 61602.02
    assert r.best_bid == [61602.01, 1.67177] and r.best_ask == [61602.02, 2.66795]
    assert stats.skipped_total == 0


def test_bundled_sample_is_the_same_capture_as_shared_data(btcusdt_files):
    for bundled, shared in zip(BINANCE_BTCUSDT_FILES, btcusdt_files, strict=True):
        assert bundled.read_bytes() == shared.read_bytes()


def test_events_carry_microsecond_times_ids_and_taker_side(btcusdt_files):
    events = iter_events(btcusdt_files[:1], progress=False)
    first = [next(events) for _ in range(8)]
    delta = first[0]
    assert isinstance(delta, BookDelta)
    assert (delta.first_update_id, delta.update_id, delta.prev_update_id) == (50093239189, 50093239202, -1)
    assert delta.ts_us == 1723161255208000 and delta.local_ts_us == 1723161253937085
    assert isinstance(first[2], BestBidOffer) and first[2].ts_us == first[2].local_ts_us
    trade = first[3]
    assert isinstance(trade, Trade)
    assert (trade.trade_id, trade.price, trade.amount, trade.side) == ("3735683259", 61837.63, 0.02, "sell")
    assert trade.ts_us == 1723161255342000
    snap = first[7]
    assert isinstance(snap, BookSnapshot) and snap.symbol == "BTC/USDT" and snap.update_id == 50093239218


def _write_lines(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _head(btcusdt_files, n: int) -> list[str]:
    out = []
    with gzip.open(btcusdt_files[0], "rt") as f:
        for line in f:
            out.append(line.rstrip("\n"))
            if len(out) == n:
                break
    return out


def test_truncated_gzip_stops_with_file_and_line(tmp_path, btcusdt_files):
    data = btcusdt_files[0].read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as err:
        for _ in iter_events([cut], progress=False):
            pass
    assert "cut.gz:" in str(err.value) and "truncated" in str(err.value)
    assert err.value.line and err.value.line > 1000


def test_malformed_lines_are_counted_skips_with_their_location(tmp_path, btcusdt_files):
    lines = _head(btcusdt_files, 20)
    lines.insert(5, "not a line at all")
    lines.insert(9, "1723161254087891268 {broken json")
    lines.insert(12, '1723161254087891268 {"stream":"x","data":{"e":"whatever"}}')
    stats = ImportStats()
    events = list(iter_events([_write_lines(tmp_path / "bad.gz", lines)], progress=False, stats=stats))
    assert len(events) == 20
    assert stats.skipped_total == 3
    assert any(where.endswith("bad.gz:6") for where in stats.first_skip.values())


def test_out_of_order_line_is_skipped_and_the_lost_diff_shows_as_a_gap(tmp_path, btcusdt_files):
    lines = _head(btcusdt_files, 300)
    # move a depth diff two lines later: its receive time is now older than its predecessor's
    idx = next(i for i, line in enumerate(lines) if i > 10 and "depthUpdate" in line)
    lines.insert(idx + 3, lines.pop(idx))
    stats = ImportStats()
    events = list(iter_events([_write_lines(tmp_path / "ooo.gz", lines)], progress=False, stats=stats))
    assert stats.skipped == {"line older than the line before it": 1}
    report = inspect_events(events)[("binance", "BTC/USDT")]
    assert report.seq_gaps == 1


def test_second_symbol_in_capture_stops_with_file_and_line(tmp_path, btcusdt_files):
    lines = _head(btcusdt_files, 20)
    ts, raw = lines[3].split(" ", 1)
    msg = json.loads(raw)
    msg["data"]["s"] = "ETHUSDT"
    lines.insert(4, f"{ts} {json.dumps(msg)}")
    with pytest.raises(InputError, match=r"mixed\.gz:5: message for ETH/USDT in a capture of BTC/USDT"):
        list(iter_events([_write_lines(tmp_path / "mixed.gz", lines)], progress=False))


def test_files_given_out_of_time_order_are_refused(btcusdt_files):
    with pytest.raises(InputError, match="pass the files of one capture in time order"):
        list(iter_events(list(reversed(btcusdt_files)), progress=False))


def test_futures_capture_is_detected_from_pu(tmp_path):
    lines = [
        '1626992741081672000 {"stream":"sushiusdt@depth@100ms","data":{"e":"depthUpdate","E":1626992741037,'
        '"T":1626992741024,"s":"SUSHIUSDT","U":10,"u":12,"pu":9,"b":[["7.5040","813"]],"a":[]}}',
    ]
    events = list(iter_events([_write_lines(tmp_path / "fut.gz", lines)], progress=False))
    assert events[0].exchange == "binanceusdm" and events[0].symbol == "SUSHI/USDT:USDT"
    assert events[0].prev_update_id == 9
