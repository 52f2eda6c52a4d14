"""Every trade counted once: the trade-id guard, the engine and ``helios inspect`` on real data with trades
delivered twice (the bundled BTCUSDT capture with injected repeats, and the soak run in ../shared/evidence
whose recording holds 14,065 BTC/USDT trades twice)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import _btcusdt
import pandas as pd
import pytest

from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import RecordingSettings
from helios_orderflow.core.trade_ids import TradeIdAudit, TradeIdGuard, has_increasing_trade_ids
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.features.compute import compute_features
from helios_orderflow.recording.writer import RecordingWriter

EVIDENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "evidence" / "soak-duplicated-trades"


def _with_repeats(every: int) -> tuple[list, int]:
    """The capture's events with every ``every``-th trade delivered again right after the next event (the
    same trade: same id, time, price, amount, side; a later receive time)."""
    out, repeats, pending = [], 0, None
    n = 0
    for ev in _btcusdt.events():
        out.append(ev)
        if pending is not None:
            out.append(dataclasses.replace(pending, local_ts_us=ev.local_ts_us))
            repeats += 1
            pending = None
        if type(ev) is Trade:
            n += 1
            if n % every == 0:
                pending = ev
    return out, repeats


def test_the_guard_drops_a_repeated_or_older_id_and_follows_a_numbering_restart():
    g = TradeIdGuard()
    assert [g.admit(i, t) for i, t in (("10", 100), ("11", 100), ("12", 105))] == [True, True, True]
    assert not g.admit("11", 100)  # the same trade again
    assert not g.admit("9", 90)  # older, out of order
    assert g.admit("13", 105)
    assert g.dropped == 2
    assert g.admit("1", 200)  # lower id, later time: the venue numbers again (a restarted local exchange)
    assert g.admit("2", 200) and not g.admit("1", 200)
    assert g.admit("", 50) and g.admit("not-a-number", 50)  # no usable id: nothing to check
    assert g.dropped == 3


def test_the_audit_tells_duplicates_from_out_of_order_ids_within_its_window():
    a = TradeIdAudit(window=3)
    for i, t in (("1", 1), ("2", 2), ("4", 4), ("2", 2), ("3", 3), ("4", 4)):
        a.add(i, t)
    assert (a.duplicates, a.out_of_order, a.restarts) == (2, 1, 0)
    assert a.first_duplicate == "id 2 again after 4"
    for i in ("5", "6", "7", "8"):
        a.add(i, 9)
    a.add("5", 9)  # repeated, but older than the 3 ids remembered: counted as out of order
    assert (a.duplicates, a.out_of_order) == (2, 2)
    a.add("1", 10)  # lower id, later time: the numbering restarted
    a.add("1", 10)
    assert (a.restarts, a.duplicates) == (1, 3)


def test_venues_with_increasing_ids_are_the_checked_ones():
    assert all(map(has_increasing_trade_ids, ("binance", "binanceusdm", "binancecoinm", "okx", "gate")))
    assert not any(map(has_increasing_trade_ids, ("kucoin", "bybit", "kraken", "")))


def test_the_engine_counts_a_trade_delivered_twice_once_on_the_real_capture():
    with_repeats, repeats = _with_repeats(every=50)
    assert repeats == _btcusdt.TRADES // 50
    clean_rows, dup_rows = [], []
    clean = PairEngine("binance", "BTC/USDT", timeframe="1m", on_candle=clean_rows.append)
    dup = PairEngine("binance", "BTC/USDT", timeframe="1m", on_candle=dup_rows.append)
    for ev in _btcusdt.events():
        clean.on_event(ev)
    for ev in with_repeats:
        dup.on_event(ev)
    assert dup.snapshot().cvd_total == pytest.approx(_btcusdt.CVD, abs=1e-9)
    assert dup.snapshot().cvd_total == clean.snapshot().cvd_total
    assert dup_rows == clean_rows  # every candle, every feature: as if the repeats never came
    assert dup.snapshot().health.duplicate_trades == repeats and clean.snapshot().health.duplicate_trades == 0


def test_a_venue_without_increasing_ids_is_not_guarded():
    """KuCoin's ids are hex object ids: the engine cannot tell a repeat there, and must not drop anything."""
    events = [dataclasses.replace(ev, exchange="kucoin") for ev in _with_repeats(every=50)[0]]
    engine = PairEngine("kucoin", "BTC/USDT")
    for ev in events:
        engine.on_event(ev)
    assert engine.snapshot().health.duplicate_trades == 0
    assert engine.snapshot().cvd_total != pytest.approx(_btcusdt.CVD, abs=1e-6)


def test_features_of_the_soak_recording_with_trades_recorded_twice_count_each_trade_once():
    """The defect's own output: 48,253 BTC/USDT trade rows of which 14,065 repeat an earlier one. Counted
    twice they gave cvd_total 12.2306; each trade once, 9.31939 (the sum over distinct trade ids)."""
    rec = EVIDENCE / "recording"
    trades = pd.concat(pd.read_parquet(p) for p in sorted((rec / "trades").rglob("symbol=BTC_USDT/*/*.parquet")))
    distinct = trades.drop_duplicates("id")
    assert (len(trades), len(trades) - len(distinct)) == (48_253, 14_065)
    expected = (distinct.amount * distinct.side.map({"buy": 1.0, "sell": -1.0})).sum()
    assert expected == pytest.approx(9.31939, abs=1e-9)
    frame = compute_features(rec, "BTC/USDT", "1m", cache=False)
    assert frame["cvd_total"].iloc[-1] == pytest.approx(expected, abs=1e-9)
    assert frame["delta"].sum() == pytest.approx(expected, abs=1e-9)
    assert frame["trades"].sum() == len(distinct)


def _inspect_json(*args: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "helios_orderflow.cli", "inspect", *args, "--json"],
                          capture_output=True, text=True, check=True, timeout=300)
    return json.loads(proc.stdout)


def test_helios_inspect_reports_injected_duplicate_trade_rows_and_counts_cvd_once(tmp_path: Path):
    with_repeats, repeats = _with_repeats(every=100)
    out = tmp_path / "rec"
    with RecordingWriter(out, RecordingSettings(), flush_by_time=False) as w:
        for ev in with_repeats:
            w.write(ev)
    [r] = _inspect_json(str(out))
    assert r["trades"] == _btcusdt.TRADES + repeats
    assert (r["duplicate_trade_ids"], r["out_of_order_trade_ids"], r["trades_not_counted"]) == (repeats, 0, repeats)
    assert r["cvd"] == pytest.approx(_btcusdt.CVD, abs=1e-8)
    assert r["first_duplicate"].startswith("id ")


def test_helios_inspect_reports_the_duplicates_of_the_soak_recording_for_every_pair():
    reports = {r["symbol"]: r for r in _inspect_json(str(EVIDENCE / "recording"))}
    assert len(reports) == 10
    assert reports["BTC/USDT"]["duplicate_trade_ids"] == 14_065
    assert reports["BTC/USDT"]["cvd"] == pytest.approx(9.31939, abs=1e-8)
    assert sum(r["duplicate_trade_ids"] for r in reports.values()) == 96_433  # the soak's own count
    assert all(r["out_of_order_trade_ids"] == 0 for r in reports.values())


def test_helios_inspect_on_an_import_reports_no_duplicates_in_the_real_capture(btcusdt_files):
    [r] = _inspect_json("--format", "binance-raw", *map(str, btcusdt_files))
    assert (r["trades"], r["duplicate_trade_ids"], r["out_of_order_trade_ids"]) == (_btcusdt.TRADES, 0, 0)
