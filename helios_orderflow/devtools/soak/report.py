"""The soak's report (``name: value`` lines and ``soak.json``) and its pass rule."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from helios_orderflow.devtools.soak.watch import HealthWatcher, WindowResult, load_average

if TYPE_CHECKING:
    from helios_orderflow.live.feed import FeedStats
    from helios_orderflow.live.health import PairHealth

#: A run fails when RSS at the end exceeds RSS after warm-up by this fraction.
RSS_GROWTH_LIMIT = 0.05
#: At the soak's load (``--pairs`` 10 at ``--rate-x`` 10, a fault window every ~12 s, nothing else on the
#: machine), every fault window must be recovered (every pair healthy again) within this many seconds of
#: its end. The slowest kind is a stale snapshot: ccxt's retries back off while the stale snapshots keep
#: coming (25.9 s was the longest of four idle 30-minute runs; most kinds take the 10 pairs' queue of REST
#: snapshots through ccxt's rate limiter, about 5 s).
RECOVERY_LIMIT_S = 30.0
#: Report entries printed apart (``problem:``/``failed:`` lines) or only written to ``soak.json``.
_NOT_PRINTED = ("windows", "problems", "failed", "bot_problems", "whitelist_missed")


@dataclass(frozen=True, slots=True)
class Measurements:
    """What one run measured, from the end of the warm-up (``span_s`` wall seconds) to the end.

    ``rss_samples``: Helios's RSS (bytes) once a second; ``cpu_*_s``: CPU seconds of Helios and of the
    exchange child over the span; ``final``: the exchange's ``final.json``; ``comparison``: what
    ``compare_recording`` found; ``freqtrade``: the dry-run's report (empty without ``--with-freqtrade``).
    """

    span_s: float
    events_start: int
    stats: FeedStats
    health: dict[str, PairHealth]
    watcher: HealthWatcher
    final: dict[str, Any]
    rss_samples: list[int]
    cpu_helios_s: float
    cpu_exchange_s: float
    load_start: float
    settle_s: float
    events_recorded: int
    bytes_recorded: int
    comparison: dict[str, Any]
    freqtrade: dict[str, Any] = field(default_factory=dict)


def build_report(m: Measurements, *, minutes: float, pairs: int, rate_x: float, seed: int, warmup_s: float,
                 segment_s: float, recovery_limit_s: float) -> dict[str, Any]:
    """The report of a run (see the package doc for every field), with ``failed`` and ``passed``."""
    span = m.span_s
    stats = m.stats
    # The recorder's open segments make RSS a sawtooth of period ``segment_s``: compare the peaks of the
    # first and the last window of two segments (whole periods), not two arbitrary points.
    results = m.watcher.results
    disturbing = [r for r in results if r.disturbs]
    report: dict[str, Any] = {
        "minutes": minutes, "pairs": pairs, "rate_x": rate_x, "seed": seed, "warmup_s": warmup_s,
        "measured_s": round(span, 1),
        "events_processed": stats.events,
        "events_per_s": round((stats.events - m.events_start) / span, 1),
        "book_snapshots": stats.book_snapshots, "book_deltas": stats.book_deltas, "trades": stats.trades,
        "bbo": stats.bbo, "engine_errors": stats.engine_errors, "recorder_errors": stats.recorder_errors,
        "trades_delivered_twice_dropped": stats.duplicate_trades,
        "exchange_diffs_published": m.final["diffs_published"],
        "exchange_trades_published": m.final["trades_published"],
        "exchange_ws_connections": m.final["ws_connections"],
        "fault_windows": len(results),
        "faults_injected": sum(sum(v for k, v in r.fired.items() if k != "connections_closed") for r in results),
        "faults_injected_by_kind": m.final["fault_counts"],
        "fault_windows_disturbing": len(disturbing),
        "faults_detected": sum(r.detected or r.unhealthy_seen for r in disturbing),
        "faults_undetected": sum(not (r.detected or r.unhealthy_seen) and bool(r.fired) for r in disturbing),
        "faults_recovered": sum(r.recovered_after_s is not None for r in results),
        "faults_unrecovered": sum(r.recovered_after_s is None for r in results),
        "faults_recovered_after_next_window": sum(r.recovered_late for r in results),
        "longest_recovery_after_fault_s": round(max((r.recovered_after_s or 0.0 for r in results), default=0.0), 2),
        "recovery_by_kind_max_s": max_recovery_by_kind(results),
        "feed_gaps": stats.gaps,
        "unhealthy_pair_s": round(m.watcher.unhealthy_pair_s, 1),
        "unhealthy_share_pct": round(100.0 * m.watcher.unhealthy_pair_s / (pairs * span), 2),
        "healthy_while_crossed": m.watcher.healthy_while_crossed,
        "health_samples": m.watcher.samples,
        "health_totals": {k: sum(getattr(h, k) for h in m.health.values())
                          for k in ("gaps", "resyncs", "reconnects", "crossed_books", "errors")},
        **rss_figures(m.rss_samples, segment_s),
        "cpu_helios_pct": round(100.0 * m.cpu_helios_s / span, 1),
        "cpu_exchange_pct": round(100.0 * m.cpu_exchange_s / span, 1),
        "load_average_start": round(m.load_start, 2),
        "load_average_end": round(load_average(), 2),
        "cpus": os.cpu_count(),
        "settle_s": round(m.settle_s, 2),
        "events_recorded": m.events_recorded,
        "bytes_recorded": m.bytes_recorded,
        **m.comparison,
        **m.freqtrade,
        "windows": [asdict(r) for r in results],
    }
    report["recovery_limit_s"] = recovery_limit_s
    report["failed"] = pass_rule_failures(report, pairs)
    report["passed"] = not report["failed"]
    return report


def rss_figures(rss: list[int], segment_s: float, prefix: str = "") -> dict[str, Any]:
    """RSS after warm-up and at the end from samples once a second: the recorder's open segments make RSS
    a sawtooth of period ``segment_s``, so the peaks of the first and the last window of two segments (whole
    periods) are compared, not two arbitrary points."""
    window = max(1, min(len(rss) // 3, int(2 * segment_s)))
    rss_start, rss_end = max(rss[:window]), max(rss[-window:])
    return {
        f"{prefix}rss_start_mb": round(rss_start / 2**20, 1),
        f"{prefix}rss_end_mb": round(rss_end / 2**20, 1),
        f"{prefix}rss_growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 2),
        f"{prefix}rss_min_mb": round(min(rss) / 2**20, 1),
        f"{prefix}rss_max_mb": round(max(rss) / 2**20, 1),
        f"{prefix}rss_window_s": window,
        # the curve behind the two ends: a leak keeps rising, a settling heap levels off
        f"{prefix}rss_peak_per_minute_mb": [round(max(rss[i:i + 60]) / 2**20, 1) for i in range(0, len(rss), 60)],
    }


def pass_rule_failures(report: dict[str, Any], pairs: int) -> list[str]:
    """The pass rules (package doc) that ``report`` breaks, each as ``"name: value (limit)"``; empty: passed."""
    rules = [
        ("rss_growth_pct", report["rss_growth_pct"] < 100 * RSS_GROWTH_LIMIT, f"< {100 * RSS_GROWTH_LIMIT:g}"),
        ("faults_unrecovered", report["faults_unrecovered"] == 0, "0"),
        ("faults_undetected", report["faults_undetected"] == 0, "0"),
        ("lost_book_diffs", report["lost_book_diffs"] == 0, "0"),
        ("lost_trades", report["lost_trades"] == 0, "0"),
        ("duplicate_trades", report["duplicate_trades"] == 0, "0"),
        ("trades_delivered_twice_dropped", report["trades_delivered_twice_dropped"] == 0, "0"),
        ("wrong_books", report["wrong_books"] == 0, "0"),
        ("final_books_equal", report["final_books_equal"] == pairs, str(pairs)),
        ("engine_errors", report["engine_errors"] == 0, "0"),
        ("healthy_while_crossed", report["healthy_while_crossed"] == 0, "0"),
        ("longest_recovery_after_fault_s", report["longest_recovery_after_fault_s"] <= report["recovery_limit_s"],
         f"<= {report['recovery_limit_s']:g}"),
        ("freqtrade_errors", report.get("freqtrade_errors", 0) == 0, "0"),
    ]
    if "bot_lost_trades" in report:  # the bot in the loop: its recording and RSS under the same rules
        rules += [
            ("freqtrade_alive_at_end", report["freqtrade_alive_at_end"], "True"),
            ("bot_rss_growth_pct", report["bot_rss_growth_pct"] < 100 * RSS_GROWTH_LIMIT,
             f"< {100 * RSS_GROWTH_LIMIT:g}"),
            *((f"bot_{k}", report[f"bot_{k}"] == 0, "0") for k in (
                "lost_book_diffs", "lost_trades", "duplicate_trades", "wrong_books", "book_sync_failures",
                "undeclared_resyncs")),
            ("bot_final_books_equal", report["bot_final_books_equal"] == report["bot_final_pairs"],
             str(report["bot_final_pairs"])),
            ("whitelist_changes_missed", report["whitelist_changes_missed"] == 0, "0"),
            ("whitelist_longest_delay_s", report["whitelist_longest_delay_s"] <= report["whitelist_limit_s"],
             f"<= {report['whitelist_limit_s']:g}"),
        ]
        if report.get("disk_window") == "ran":
            rules += [("recording_paused", report["recording_paused"], "True"),
                      ("recording_resumed", report["recording_resumed"], "True"),
                      ("bot_gaps_recording_paused", report["bot_gaps_recording_paused"] > 0, "> 0")]
    return [f"{name}: {report.get(name, 0)} (limit {limit})" for name, ok, limit in rules if not ok]


def max_recovery_by_kind(results: list[WindowResult]) -> dict[str, float]:
    """The longest recovery (seconds) of each fault kind among the windows that recovered."""
    out: dict[str, float] = {}
    for r in results:
        if r.recovered_after_s is not None:
            out[r.kind] = round(max(out.get(r.kind, 0.0), r.recovered_after_s), 2)
    return out


def print_report(report: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """``name: value`` lines, sorted, then one ``problem:`` line per problem and one ``failed:`` line per
    broken rule."""
    for key in sorted(report):
        value = report[key]
        if key in _NOT_PRINTED:
            continue
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        out.write(f"{key}: {value}\n")
    for text in report.get("problems", []):
        out.write(f"problem: {text}\n")
    for text in report.get("bot_problems", []):
        out.write(f"bot problem: {text}\n")
    for text in report.get("whitelist_missed", []):
        out.write(f"whitelist change not seen: {text}\n")
    for text in report.get("failed", []):
        out.write(f"failed: {text}\n")
