"""`helios import` and `helios inspect` as a user runs them, on the real BTCUSDT capture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HELIOS = [sys.executable, "-m", "helios_orderflow.cli"]


def helios(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HELIOS, *args], capture_output=True, text=True, check=check, timeout=300)


def _files_digest(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def imported(tmp_path_factory, btcusdt_files):
    out = tmp_path_factory.mktemp("rec") / "btc"
    proc = helios("import", "--format", "binance-raw", *map(str, btcusdt_files), "--out", str(out), "--no-progress")
    assert "imported" in proc.stdout
    return out


def test_inspect_json_on_the_recording_has_the_checked_figures(imported):
    report = json.loads(helios("inspect", str(imported), "--json").stdout)
    assert len(report) == 1
    r = report[0]
    for key in ("exchange", "symbol", "first_ts_us", "last_ts_us", "snapshots", "book_events", "trades",
                "seq_gaps", "crossed", "bbo_checks", "bbo_mismatches", "best_bid", "best_ask",
                "taker_buy", "taker_sell", "cvd"):
        assert key in r
    assert (r["exchange"], r["symbol"]) == ("binance", "BTC/USDT")
    assert r["seq_gaps"] == 0 and r["crossed"] == 0
    assert r["bbo_checks"] >= 1000 and r["bbo_mismatches"] == 0
    assert r["trades"] == 19904
    assert r["cvd"] == pytest.approx(-28.93328, abs=1e-6)
    assert r["best_bid"][0] == 61602.01 and r["best_ask"][0] == 61602.02


def test_inspect_on_recording_equals_inspect_straight_from_source(imported, btcusdt_files):
    from_recording = json.loads(helios("inspect", str(imported), "--json").stdout)
    from_source = json.loads(
        helios("inspect", "--format", "binance-raw", *map(str, btcusdt_files), "--json", "--no-progress").stdout
    )
    assert from_recording == from_source


def test_importing_the_same_source_twice_gives_identical_datasets(imported, tmp_path, btcusdt_files):
    again = tmp_path / "again"
    helios("import", "--format", "binance-raw", *map(str, btcusdt_files), "--out", str(again), "--no-progress")
    first, second = _files_digest(imported), _files_digest(again)
    assert first and list(first) == list(second)
    assert first == second


def test_recording_events_equal_source_events_one_for_one(imported, btcusdt_files):
    from helios_orderflow.importers.binance_raw import iter_events
    from helios_orderflow.recording.reader import read_events

    source = iter_events(btcusdt_files, progress=False)
    n = 0
    for n, (a, b) in enumerate(zip(source, read_events(imported), strict=True), start=1):  # noqa: B007
        assert a == b
    assert n == 6495 + 1 + 19904 + 73174


def test_missing_source_file_is_a_clear_error_not_a_traceback(tmp_path):
    proc = helios("import", "--format", "binance-raw", str(tmp_path / "nope.gz"), "--out", str(tmp_path / "o"),
                  check=False)
    assert proc.returncode == 2
    assert "nope.gz: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_inspect_of_a_folder_that_is_not_a_recording_says_what_to_do(tmp_path):
    proc = helios("inspect", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "helios import" in proc.stderr or "helios record" in proc.stderr
