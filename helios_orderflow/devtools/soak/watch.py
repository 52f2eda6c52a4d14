"""What the soak samples while it runs: the process's RSS and CPU (Linux ``/proc``), the load, and the feed's
health around every fault window (``HealthWatcher``: detected, recovered, how long pairs were unhealthy)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from helios_orderflow.devtools.soak.schedule import FaultWindow

if TYPE_CHECKING:
    from helios_orderflow.live.feed import Feed


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (Linux ``/proc``), bytes."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds a process used so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    """The machine's one-minute load average."""
    return os.getloadavg()[0]


@dataclass
class WindowResult:
    """What the feed's health did around one fault window (times: wall seconds)."""

    kind: str
    on: float
    off: float
    disturbs: bool
    detected: bool = False
    unhealthy_seen: bool = False
    recovered_after_s: float | None = None  # from the window's end to every pair healthy again
    recovered_late: bool = False  # not before the next window started (counted, and timed, all the same)
    fired: dict[str, int] = field(default_factory=dict)


class HealthWatcher:
    """Samples the feed's SharedState; decides per fault window whether it was detected and recovered."""

    def __init__(self, feed: Feed, windows: list[tuple[float, float, FaultWindow]],
                 measured: tuple[float, float] = (0.0, float("inf"))) -> None:
        self.feed = feed
        #: Unhealthy time counts between these wall times only: the warm-up (every pair's first snapshot
        #: through the rate limiter) and the settling after the run are not part of the measured load.
        self.measured = measured
        self.symbols = feed.symbols
        self.pending = list(windows)
        self.results: list[WindowResult] = []
        self.current: WindowResult | None = None
        self.baseline = 0
        self.unhealthy_pair_s = 0.0  # pair-seconds in which confirm_trade_entry would reject (unhealthy)
        self.healthy_while_crossed = 0  # samples where a pair was called healthy with best bid >= best ask
        self.last_sample = 0.0
        self.samples = 0
        self.last_unhealthy = 0.0
        self.recovering: list[WindowResult] = []  # closed windows whose pairs were not all healthy yet

    def _counter(self) -> int:
        total = 0
        for s in self.symbols:
            snap = self.feed.state.get(s)
            if snap is not None:
                h = snap.health
                total += h.errors + h.resyncs + h.crossed_books + h.gaps + h.reconnects
        return total

    def sample(self, now: float) -> None:
        dt = min(1.0, now - self.last_sample) if self.last_sample else 0.0
        self.last_sample = now
        if not self.measured[0] <= now <= self.measured[1]:
            dt = 0.0
        self.samples += 1
        healthy = True
        for s in self.symbols:
            ok = self.feed.state.is_healthy(s)
            healthy = healthy and ok
            if not ok:
                self.unhealthy_pair_s += dt
                continue
            snap = self.feed.state.get(s)  # healthy: the pair has a snapshot
            if snap is not None and snap.best_bid is not None and snap.best_ask is not None \
                    and snap.best_bid >= snap.best_ask:
                self.healthy_while_crossed += 1
        if healthy and self.recovering:
            for late in self.recovering:
                late.recovered_after_s = max(0.0, now - late.off)
                late.recovered_late = True
            self.recovering = []
        cur = self.current
        if cur is not None:
            if not healthy:
                cur.unhealthy_seen = True
                self.last_unhealthy = now
            if self._counter() > self.baseline:
                cur.detected = True
        if self.pending and now >= self.pending[0][0]:
            self.finish(healthy)
            on, off, w = self.pending.pop(0)
            self.current = WindowResult(w.kind, on, off, w.disturbs)
            self.baseline = self._counter()
            self.last_unhealthy = 0.0
            self.results.append(self.current)

    def finish(self, healthy: bool) -> None:
        """Close the current window (the next starts, or the run ends): recovered when every pair is healthy
        now, after the last moment one was not (a link that dies late, e.g. after missed pongs, counts)."""
        cur = self.current
        if cur is not None:
            if healthy:
                cur.recovered_after_s = max(0.0, self.last_unhealthy - cur.off)
            else:  # still recovering when the next window starts: timed until every pair is healthy
                self.recovering.append(cur)
        self.current = None


def wait_settled(feed: Feed, books: dict[str, dict[str, int]], watcher: HealthWatcher, timeout_s: float) -> float:
    """After the market froze: wait until every pair's feed holds the exchange's final book (the book
    differ's update id equals the exchange's last one) and is healthy. Returns the seconds it took."""
    t = time.time()
    while time.time() - t < timeout_s:
        watcher.sample(time.time())
        # The feed's per-pair state is private: the soak is the one reader that needs the differ's nonce.
        done = all(feed._pairs[s].differ.nonce == books[s]["last_update_id"] and feed.state.is_healthy(s)
                   for s in feed.symbols)
        if done:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # trades and best bid/offer of the last step
    return time.time() - t


def progress_line(out: TextIO, feed: Feed, elapsed: float, total: float, events_start: int, wall_start: float,
                  cpu_start: float, rss_start: int, watcher: HealthWatcher) -> None:
    """One progress line: events and their rate, fault windows, unhealthy pairs, RSS, CPU, bytes recorded."""
    unhealthy = sum(not feed.state.is_healthy(s) for s in feed.symbols)
    rate = (feed.stats.events - events_start) / max(1e-9, time.time() - wall_start)
    cpu = 100.0 * (cpu_seconds() - cpu_start) / max(1e-9, time.time() - wall_start)
    done = sum(1 for r in watcher.results if r.recovered_after_s is not None)
    _, written = feed.recording_stats()
    out.write(f"soak {elapsed:6.0f}/{total:.0f} s  events {feed.stats.events:,} ({rate:,.0f}/s)  "
              f"faults {len(watcher.results)} ({done} recovered)  unhealthy pairs {unhealthy}  "
              f"rss {rss_bytes() / 2**20:.0f} MB ({rss_start / 2**20:.0f} at start)  cpu {cpu:.0f}%  "
              f"recorded {written / 2**20:.1f} MB  load {load_average():.1f}\n")
    out.flush()
