"""The soak in one minute (issue 9): CI's version of ``make soak``, with the same pass criteria.

10 pairs at 10x Binance's message rate from the local exchange (a child process), the live feed with the
real ccxt.pro client, one engine per pair and the recorder; faults on the soak's schedule (a disconnect,
dropped diffs, sequence gaps). After a 20 s warm-up, 40 s are measured. The bounded buffers are sized so
they are full after the warm-up (5 s recording segments, a 10 s heatmap window; the 30-minute run uses
60 s and 60 s with a 120 s warm-up), so RSS growth measures leaks. See docs/reliability.md for the
30-minute figures.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from helios_orderflow.devtools.soak import SCHEDULE, run_soak, schedule

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAIRS = 10


def test_the_fault_schedule_cycles_every_fault_kind_and_leaves_quiet_time_to_recover():
    windows = schedule(120.0, 120.0 + 1800.0, keepalive_s=5.0)
    kinds = [w.kind for _, _, w in windows]
    assert set(kinds) == {w.kind for w in SCHEDULE}
    assert len(windows) >= 10 * len(SCHEDULE) - 1
    assert all(b2 - a1 >= 10.0 for (_, a1, _), (b2, _, _) in itertools.pairwise(windows))
    assert windows[-1][1] <= 120.0 + 1800.0 - 10.0


def test_one_minute_soak_recovers_every_fault_and_loses_nothing_outside_declared_gaps(tmp_path: Path):
    report = run_soak(2 / 3, tmp_path, pairs=PAIRS, rate_x=10.0, warmup_s=20.0, segment_s=5.0,
                      flush_interval_s=1.0, heatmap_window_s=10.0, progress=None)
    problems = report["problems"]
    # The schedule ran and the faults reached the feed.
    assert report["fault_windows"] >= 3
    assert report["faults_injected"] >= 20
    assert report["declared_gaps"] >= PAIRS
    # Every fault was noticed and every pair was healthy again before the next one.
    assert report["faults_undetected"] == 0
    assert report["faults_unrecovered"] == 0
    # Nothing lost outside declared gaps, no wrong book, the final books equal the exchange's.
    assert report["book_states_checked"] > 5_000
    assert report["wrong_books"] == 0, problems
    assert report["lost_book_diffs"] == 0, problems
    assert report["trades_checked"] > 10_000
    assert report["lost_trades"] == 0, problems
    assert report["duplicate_trades"] == 0 and report["trades_delivered_twice_dropped"] == 0, problems
    assert report["final_books_equal"] == PAIRS, problems
    assert report["engine_errors"] == 0 and report["recorder_errors"] == 0
    assert report["events_recorded"] == report["events_processed"]
    # Every window recovered within the limit (a pair is unhealthy at most its window plus that long).
    assert report["longest_recovery_after_fault_s"] <= report["recovery_limit_s"], report["recovery_by_kind_max_s"]
    # No leak: RSS after the warm-up grows less than 5 %.
    assert report["rss_growth_pct"] < 5.0
    assert report["passed"] is True


def test_the_pass_rule_fails_on_a_trade_recorded_twice_or_a_slow_recovery_and_says_which():
    from helios_orderflow.devtools.soak import RECOVERY_LIMIT_S, pass_rule_failures

    clean = {"rss_growth_pct": 1.0, "faults_unrecovered": 0, "faults_undetected": 0, "lost_book_diffs": 0,
             "lost_trades": 0, "duplicate_trades": 0, "trades_delivered_twice_dropped": 0, "wrong_books": 0,
             "final_books_equal": PAIRS, "engine_errors": 0, "healthy_while_crossed": 0,
             "longest_recovery_after_fault_s": RECOVERY_LIMIT_S, "recovery_limit_s": RECOVERY_LIMIT_S}
    assert pass_rule_failures(clean, PAIRS) == []
    assert pass_rule_failures({**clean, "duplicate_trades": 96_433}, PAIRS) == ["duplicate_trades: 96433 (limit 0)"]
    assert pass_rule_failures({**clean, "trades_delivered_twice_dropped": 3}, PAIRS) == [
        "trades_delivered_twice_dropped: 3 (limit 0)"]
    assert pass_rule_failures({**clean, "longest_recovery_after_fault_s": 30.5}, PAIRS) == [
        "longest_recovery_after_fault_s: 30.5 (limit <= 30)"]
