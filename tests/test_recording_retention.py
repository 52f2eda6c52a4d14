"""Bounded disk (recording.retention_days, recording.max_gb; helios_orderflow/recording/retention.py) on real Parquet
recordings: the oldest whole UTC days go first, every stream and table of a day together; today and a live
writer's open segments are never deleted; the live recorder applies it when it starts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.events import BestBidOffer, Event, Trade
from helios_orderflow.core.settings import HeliosSettings, RecordingSettings
from helios_orderflow.recording import RecordingWriter, read_events
from helios_orderflow.recording.recorder import Recorder
from helios_orderflow.recording.retention import apply_retention, day_folders
from helios_orderflow.recording.schema import US_PER_DAY, date_of_day

DAY0 = 19_944  # 2024-08-09
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def day_events(day: int, n: int = 2000) -> list[Event]:
    """``n`` trades and quotes per symbol spread over one UTC day (receive order)."""
    out: list[Event] = []
    for i in range(n):
        t = day * US_PER_DAY + i * (US_PER_DAY // n)
        for k, sym in enumerate(SYMBOLS):
            price = 60_000.0 + i + k
            out.append(Trade("binance", sym, t, t, price, 0.01 + i % 7, "buy" if i % 2 else "sell", f"{day}-{i}"))
            out.append(BestBidOffer("binance", sym, t, t, i, price - 0.01, 1.0, price + 0.01, 2.0))
    return out


def make_recording(root: Path, days: range) -> dict[int, list[Event]]:
    by_day = {d: day_events(d) for d in days}
    with RecordingWriter(root, RecordingSettings(segment_s=3600), flush_by_time=False) as writer:
        for d in days:
            writer.write_many(by_day[d])
    return by_day


def noon(day: int) -> int:
    return day * US_PER_DAY + US_PER_DAY // 2


def test_retention_days_deletes_the_oldest_whole_days_and_keeps_today(tmp_path: Path) -> None:
    by_day = make_recording(tmp_path, range(DAY0, DAY0 + 4))
    assert list(day_folders(tmp_path)) == [date_of_day(d) for d in range(DAY0, DAY0 + 4)]
    assert len(day_folders(tmp_path)[date_of_day(DAY0)]) == 4  # 2 tables x 2 symbols

    result = apply_retention(tmp_path, retention_days=2, now_us=noon(DAY0 + 3))

    assert result.deleted == [date_of_day(DAY0), date_of_day(DAY0 + 1)]
    assert list(day_folders(tmp_path)) == [date_of_day(DAY0 + 2), date_of_day(DAY0 + 3)]
    assert list(read_events(tmp_path)) == by_day[DAY0 + 2] + by_day[DAY0 + 3]
    assert result.bytes_after == result.bytes_before - result.freed_bytes > 0
    # Already within the limit: nothing more goes.
    assert apply_retention(tmp_path, retention_days=2, now_us=noon(DAY0 + 3)).deleted == []


def test_max_gb_deletes_the_oldest_days_until_the_recording_fits(tmp_path: Path) -> None:
    by_day = make_recording(tmp_path, range(DAY0, DAY0 + 4))
    sizes = {d: sum(p.stat().st_size for ddir in dirs for p in ddir.iterdir())
             for d, dirs in day_folders(tmp_path).items()}
    newest_two = sizes[date_of_day(DAY0 + 2)] + sizes[date_of_day(DAY0 + 3)]
    limit_gb = (newest_two + sizes[date_of_day(DAY0 + 1)] // 2) / 1e9  # fits two days, not three

    result = apply_retention(tmp_path, max_gb=limit_gb, now_us=noon(DAY0 + 3))

    assert result.deleted == [date_of_day(DAY0), date_of_day(DAY0 + 1)]
    assert result.bytes_after == newest_two <= limit_gb * 1e9
    assert list(read_events(tmp_path)) == by_day[DAY0 + 2] + by_day[DAY0 + 3]


def test_retention_never_deletes_today_or_a_live_writers_open_segment(tmp_path: Path) -> None:
    by_day = {d: day_events(d) for d in range(DAY0, DAY0 + 3)}
    writer = RecordingWriter(tmp_path, RecordingSettings(segment_s=3600), flush_by_time=False)
    for d in range(DAY0, DAY0 + 3):
        writer.write_many(by_day[d])
    writer.flush()  # live: the last day's segments are open, their files will be rewritten
    assert writer.open_days() == {DAY0 + 2}

    # "Today" by the clock is a day later than the writer's open segments (a quiet feed just after midnight):
    # with a limit nothing can meet, only the days nobody writes to go.
    result = apply_retention(tmp_path, retention_days=1, max_gb=1e-9, now_us=noon(DAY0 + 3),
                             protect_days=writer.open_days())
    assert result.deleted == [date_of_day(DAY0), date_of_day(DAY0 + 1)]
    assert list(day_folders(tmp_path)) == [date_of_day(DAY0 + 2)]

    more = day_events(DAY0 + 3, 10)
    writer.write_many(more)  # closes the open day-2 segments (rewritten whole) and starts today's
    writer.close()
    assert list(read_events(tmp_path)) == by_day[DAY0 + 2] + more
    # Today is kept whatever the limits say.
    assert apply_retention(tmp_path, retention_days=1, max_gb=1e-9, now_us=noon(DAY0 + 3)).deleted == [
        date_of_day(DAY0 + 2)]
    assert apply_retention(tmp_path, retention_days=1, max_gb=1e-9, now_us=noon(DAY0 + 3)).deleted == []
    assert list(read_events(tmp_path)) == more


def test_the_live_recorder_applies_retention_when_it_starts_and_records_on(tmp_path: Path) -> None:
    today = time.time_ns() // 1000 // US_PER_DAY
    make_recording(tmp_path, range(today - 5, today - 1))
    settings = HeliosSettings.from_dict({"recording": {"retention_days": 3, "flush_interval_s": 0.05}})
    recorder = Recorder(tmp_path, settings)
    try:
        deadline = time.monotonic() + 60
        while recorder.retention_runs == 0 and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        assert recorder.retention_runs == 1
        now = time.time_ns() // 1000
        live = [Trade("binance", "BTC/USDT", now, now, 60_000.0, 0.5, "buy", "live-1")]
        recorder.put(live[0])
    finally:
        recorder.close(30)
    assert not recorder.thread.is_alive() and recorder.problem is None
    assert list(day_folders(tmp_path)) == [date_of_day(today - 2), date_of_day(today)]
    assert list(read_events(tmp_path))[-1] == live[0]


def test_retention_settings_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="retention_days must be >= 0"):
        HeliosSettings.from_dict({"recording": {"retention_days": -1}})
    with pytest.raises(ConfigError, match="max_gb must be >= 0"):
        HeliosSettings.from_dict({"recording": {"max_gb": -0.5}})
    assert HeliosSettings.from_dict({"recording": {"max_gb": 2}}).recording.max_gb == 2.0
