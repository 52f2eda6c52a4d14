"""Health counters and the healthy verdict (thresholds documented in helios_orderflow/live/health.py)."""

from __future__ import annotations

import math

from helios_orderflow.core.settings import HealthSettings
from helios_orderflow.live.health import HealthTracker, PairHealth

SETTINGS = HealthSettings(stale_after_s=5.0)


class FakeClock:
    def __init__(self, t: float = 50.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_fresh_book_in_sync_and_not_crossed_is_healthy_until_stale_after_s():
    clock = FakeClock()
    tr = HealthTracker("binance", "BTC/USDT", clock)
    assert not tr.snapshot().is_healthy(clock.t, SETTINGS)
    tr.on_book(snapshot=True, crossed=False)
    h = tr.snapshot()
    assert h.has_book and h.in_sync and h.book_updates == 1 and h.resyncs == 0
    assert h.is_healthy(55.0, SETTINGS) and h.problems(55.0, SETTINGS) == ()
    assert not h.is_healthy(55.01, SETTINGS)
    assert math.isclose(h.age_s(55.01), 5.01) and h.age_s(49.0) == 0.0


def test_a_gap_counts_marks_the_book_resyncing_and_the_next_snapshot_counts_a_resync():
    clock = FakeClock()
    tr = HealthTracker("binance", "BTC/USDT", clock)
    tr.on_book(snapshot=True, crossed=False)
    clock.t = 51.0
    tr.on_error("gap", "book: ChecksumError: binance BTC/USDT ...", book=True)
    h = tr.snapshot()
    assert (h.gaps, h.errors, h.reconnects, h.resyncs) == (1, 1, 0, 0)
    assert not h.in_sync and not h.is_healthy(51.0, SETTINGS)
    assert h.problems(51.0, SETTINGS) == ("book resyncing after: book: ChecksumError: binance BTC/USDT ...",)
    assert h.last_error_mono_s == 51.0
    clock.t = 51.4
    tr.on_book(snapshot=True, crossed=False)
    h = tr.snapshot()
    assert h.in_sync and h.resyncs == 1 and h.is_healthy(51.5, SETTINGS)
    assert h.last_error is not None  # the last error stays visible after recovery


def test_network_errors_count_reconnects_and_trade_errors_leave_the_book_in_sync():
    clock = FakeClock()
    tr = HealthTracker("binance", "ETH/USDT", clock)
    tr.on_book(snapshot=True, crossed=False)
    tr.on_error("reconnect", "trades: NetworkError: closed", book=False)
    h = tr.snapshot()
    assert h.reconnects == 1 and h.in_sync and h.is_healthy(50.0, SETTINGS)
    tr.on_error("reconnect", "book: RequestTimeout", book=True)
    assert tr.snapshot().reconnects == 2 and not tr.snapshot().in_sync


def test_crossed_books_count_once_per_episode_and_are_unhealthy_while_crossed():
    clock = FakeClock()
    tr = HealthTracker("binance", "BTC/USDT", clock)
    tr.on_book(snapshot=True, crossed=False)
    for _ in range(3):
        tr.on_book(snapshot=False, crossed=True)
    h = tr.snapshot()
    assert h.crossed and h.crossed_books == 1
    assert h.problems(50.0, SETTINGS) == ("crossed book: best bid >= best ask",)
    tr.on_book(snapshot=False, crossed=False)
    tr.on_book(snapshot=False, crossed=True)
    assert tr.snapshot().crossed_books == 2


def test_observations_without_level_changes_keep_the_book_fresh_but_do_not_count_as_updates():
    clock = FakeClock()
    tr = HealthTracker("binance", "BTC/USDT", clock)
    tr.on_book(snapshot=True, crossed=False)
    clock.t = 58.0
    tr.on_book(snapshot=False, crossed=False, changed=False)
    h = tr.snapshot()
    assert h.book_updates == 1 and h.is_healthy(60.0, SETTINGS)


def test_snapshot_is_cached_until_a_counter_changes():
    tr = HealthTracker("binance", "BTC/USDT", FakeClock())
    a = tr.snapshot()
    assert tr.snapshot() is a
    tr.on_trades(3)
    b = tr.snapshot()
    assert b is not a and b.trades == 3 and a.trades == 0


def test_a_pair_never_received_says_why():
    h = PairHealth("binance", "X/USDT", last_error="X/USDT is not a market of binance")
    assert h.problems(0.0, SETTINGS) == ("no book received yet (last error: X/USDT is not a market of binance)",)


def test_the_engines_unusable_book_makes_the_one_health_record_unhealthy_and_says_why():
    clock = FakeClock()
    s = HealthSettings()
    tr = HealthTracker("binance", "BTC/USDT", clock)
    tr.on_book(snapshot=True, crossed=False)
    assert tr.snapshot().is_healthy(clock(), s)
    tr.on_engine(False)  # the engine waits for a snapshot after a declared gap
    h = tr.snapshot()
    assert not h.engine_book_ok and not h.is_healthy(clock(), s)
    assert h.problems(clock(), s) == (
        "the engine's book is not usable yet (waiting for a snapshot after a gap, a side empty, or crossed)",)
    before = tr.snapshot()
    tr.on_engine(False)  # no change: the cached record stays
    assert tr.snapshot() is before
    tr.on_engine(True)
    assert tr.snapshot().is_healthy(clock(), s)


def test_a_failed_engine_keeps_the_pair_unhealthy_whatever_its_book_does():
    clock = FakeClock()
    s = HealthSettings()
    tr = HealthTracker("binance", "SOL/USDT", clock)
    tr.on_book(snapshot=True, crossed=False)
    tr.on_engine_failed()
    tr.on_book(snapshot=False, crossed=False)
    h = tr.snapshot()
    assert h.engine_failed and not h.is_healthy(clock(), s)
    assert h.problems(clock(), s) == (
        "the order-flow engine failed and its state is frozen (see the log; restart the bot)",)
