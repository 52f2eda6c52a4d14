"""Live feed load: 20 pairs x 10 book messages/s (plus their trades and best bid/offer) from the local
exchange, through the real ccxt.pro binance client, the engine, SharedState and the recorder.

The exchange runs in its own process (``helios exchange --synthetic``, 20 symbols; one ``@depth@100ms``
diff per symbol per 100 ms), so this process's CPU is the feed's alone. Figures:

- ``state_read_us``: one ``SharedState.get(pair)`` plus reading a field of its engine state, from another
  thread while the feed publishes (mean over many reads); ``state_healthy_us``: one ``is_healthy(pair)``.
- ``feed_book_p99_ms`` / ``feed_trade_p99_ms``: from a websocket frame's arrival (ccxt's message
  handler is entered) to the publication of the SharedState snapshot that includes it, for depth diffs
  and trades. A diff conflated into a later observation counts from its own arrival.
  ``feed_book_own_p99_ms``: the feed's own share, from ccxt handing the book back to publication (diff,
  engine, snapshot); the rest is waiting behind other frames of the same burst (the exchange sends every
  pair's diff at the same 100 ms tick) and for the CPU.
- ``feed_cpu_cores``: this process's CPU time over wall time while measuring (feed thread, ccxt,
  engine, recorder thread).
- ``feed_rss_start_mb`` / ``feed_rss_end_mb`` / ``feed_rss_slope_mb_per_min``: resident memory after
  warm-up (90 s), at the end, and its least-squares slope over the measurement (10 min), with the heatmap
  window at 60 s (see ``run``). With ``quick`` (10 s warm-up, 50 s) the buffers are still filling (heatmap
  ring, the recorder's open 60 s segments): its RSS slope is not a leak measure.
- ``feed_heatmap_mb_default``: what the default 1 h heatmap rings of these pairs hold once full (the RSS a
  run with default settings grows by over its first hour).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..book_diff import BookDiffer
from ..exchange.process import start_subprocess
from ..feed import Feed
from ..settings import HeliosSettings
from ..state import PairSnapshot, SharedState
from ..symbols import binance_wire

PAIRS = 20
_BASES = ["BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "LTC", "LINK", "AVAX",
          "DOT", "TRX", "ATOM", "NEAR", "UNI", "FIL", "APT", "ARB", "OP", "SUI"]
SYMBOLS = [f"{b}/USDT" for b in _BASES[:PAIRS]]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _quantile(samples: Any, q: float) -> float:
    values = samples.sorted()
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


class _Samples:
    """Up to ``capacity`` float samples in a preallocated array (later ones are dropped)."""

    def __init__(self, capacity: int = 400_000) -> None:
        self.values = np.ones(capacity)  # ones, not zeros: every page resident from the start
        self.n = 0

    def append(self, x: float) -> None:
        if self.n < len(self.values):
            self.values[self.n] = x
            self.n += 1

    def __len__(self) -> int:
        return self.n

    def sorted(self) -> list[float]:
        return sorted(self.values[: self.n].tolist())


class _Timing:
    """Frame arrival stamps per pair and the delays to their publication (feed thread only)."""

    def __init__(self) -> None:
        self.book_pending: dict[str, int] = {}
        self.trade_pending: dict[str, int] = {}
        # Preallocated and pre-touched, so the samples themselves do not show up as RSS growth.
        self.book_ms = _Samples()
        self.observed: dict[str, int] = {}  # when the feed's book loop got the book back from ccxt
        self.process_ms = _Samples()
        self.trade_ms = _Samples()
        self.recording = False
        self.by_wire = {binance_wire(s).lower(): s for s in SYMBOLS}

    def on_frame(self, message: Any) -> None:
        data = message.get("data", message) if isinstance(message, dict) else None
        if not isinstance(data, dict):
            return
        kind = data.get("e")
        symbol = self.by_wire.get(str(data.get("s", "")).lower())
        if symbol is None:
            return
        now = time.perf_counter_ns()
        if kind == "depthUpdate":
            self.book_pending.setdefault(symbol, now)
        elif kind == "trade":
            self.trade_pending.setdefault(symbol, now)

    def on_publish(self, old: PairSnapshot | None, new: PairSnapshot) -> None:
        now = time.perf_counter_ns()
        s = new.symbol
        if old is not None and new.health.last_book_mono_s != old.health.last_book_mono_s:
            t = self.book_pending.pop(s, None)
            if t is not None and self.recording:
                self.book_ms.append((now - t) / 1e6)
            t = self.observed.pop(s, None)
            if t is not None and self.recording:
                self.process_ms.append((now - t) / 1e6)
        if old is not None and new.health.trades != old.health.trades:
            t = self.trade_pending.pop(s, None)
            if t is not None and self.recording:
                self.trade_ms.append((now - t) / 1e6)


class _TimedState(SharedState):
    timing: _Timing

    def publish(self, snapshot: PairSnapshot) -> None:
        old = self._pairs.get(snapshot.symbol)
        super().publish(snapshot)
        self.timing.on_publish(old, snapshot)


def _instrument(timing: _Timing) -> Any:
    def hook(ex: Any) -> None:
        handle = ex.handle_message

        def timed(client: Any, message: Any) -> Any:
            timing.on_frame(message)
            return handle(client, message)

        ex.handle_message = timed  # clients created later pick up the instance attribute

    return hook


@contextlib.contextmanager
def _time_observations(timing: _Timing) -> Iterator[None]:
    """Stamp when a book loop hands ccxt's book to its differ (the start of the feed's own work)."""
    observe = BookDiffer.observe

    def timed(self: BookDiffer, book: Any, local_ts_us: int) -> Any:
        timing.observed[self.symbol] = time.perf_counter_ns()
        return observe(self, book, local_ts_us)

    BookDiffer.observe = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        BookDiffer.observe = observe  # type: ignore[method-assign]


def _read_cost(state: SharedState, stop: threading.Event, out: dict[str, float]) -> None:
    """Read SharedState from another thread while the feed publishes."""
    n = 0
    t_get = t_health = 0.0
    sym = SYMBOLS[0]
    while not stop.is_set():
        t0 = time.perf_counter()
        for _ in range(1000):
            snap = state.get(sym)
            _ = snap.engine.cvd if snap is not None and snap.engine is not None else None
        t1 = time.perf_counter()
        for _ in range(1000):
            state.is_healthy(sym)
        t2 = time.perf_counter()
        t_get += t1 - t0
        t_health += t2 - t1
        n += 1000
        time.sleep(0.05)
    out["get_us"] = t_get / max(n, 1) * 1e6
    out["healthy_us"] = t_health / max(n, 1) * 1e6


def run(quick: bool = False) -> dict[str, float | int | str]:
    warmup_s, measure_s = (10.0, 50.0) if quick else (90.0, 600.0)
    timing = _Timing()
    with tempfile.TemporaryDirectory(prefix="helios-bench-feed-") as tmp, _time_observations(timing):
        proc = start_subprocess(["--synthetic", "--seed", "7", "--symbols", *SYMBOLS], Path(tmp) / "exchange.log")
        try:
            # Default settings but a 60 s heatmap window: the heatmap's ring buffer is allocated up front
            # but its pages become resident as columns are written, so with the default 1 h window RSS
            # rises until the ring is full (by design, bounded). With 60 s the warm-up fills it, and any
            # growth left over the measurement is a leak.
            settings = HeliosSettings.from_dict({"heatmap": {"window_s": 60.0}})
            state = _TimedState("binance", SYMBOLS, settings.health)
            state.timing = timing
            feed = Feed("binance", SYMBOLS, settings, ccxt_config=proc.ccxt_config(), record_to=Path(tmp) / "rec",
                        state=state, on_exchange=_instrument(timing))
            feed.start()
            try:
                deadline = time.monotonic() + 60
                while not all(state.is_healthy(s) for s in SYMBOLS):
                    if time.monotonic() > deadline:
                        sick = {s: state.problems(s) for s in SYMBOLS if not state.is_healthy(s)}
                        raise RuntimeError(f"pairs not healthy after 60 s: {sick}")
                    time.sleep(0.2)
                time.sleep(warmup_s)
                timing.recording = True
                reads: dict[str, float] = {}
                stop_reads = threading.Event()
                reader = threading.Thread(target=_read_cost, args=(state, stop_reads, reads), daemon=True)
                reader.start()
                events0 = feed.stats.events
                cpu0 = os.times()
                wall0 = time.monotonic()
                rss: list[tuple[float, float]] = [(0.0, _rss_mb())]
                while time.monotonic() - wall0 < measure_s:
                    time.sleep(min(5.0, measure_s / 10))
                    rss.append((time.monotonic() - wall0, _rss_mb()))
                cpu1 = os.times()
                wall = time.monotonic() - wall0
                events = feed.stats.events - events0
                stop_reads.set()
                reader.join()
                timing.recording = False
                healthy = sum(state.is_healthy(s) for s in SYMBOLS)
            finally:
                feed.stop()
        finally:
            proc.stop()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    xs = [t for t, _ in rss]
    ys = [m for _, m in rss]
    slope = statistics.linear_regression(xs, ys).slope * 60 if len(rss) > 2 else float("nan")
    hm = HeliosSettings().heatmap
    ring = feed._pairs[SYMBOLS[0]].engine.heatmap  # type: ignore[union-attr]
    per_column = (ring.bids[0].nbytes + ring.asks[0].nbytes + ring.buy[0].nbytes + ring.sell[0].nbytes + 16
                  if ring is not None else 0)
    heatmap_mb = per_column * (hm.window_s * 1000 / hm.snapshot_interval_ms) * len(SYMBOLS) / 1e6
    return {
        "feed_heatmap_mb_default": heatmap_mb,
        "state_read_us": reads.get("get_us", float("nan")),
        "state_healthy_us": reads.get("healthy_us", float("nan")),
        "feed_pairs": len(SYMBOLS),
        "feed_pairs_healthy_at_end": healthy,
        "feed_events_per_s": events / wall,
        "feed_book_frames_timed": len(timing.book_ms),
        "feed_book_p50_ms": _quantile(timing.book_ms, 0.5),
        "feed_book_p99_ms": _quantile(timing.book_ms, 0.99),
        "feed_trade_p99_ms": _quantile(timing.trade_ms, 0.99),
        "feed_book_own_p99_ms": _quantile(timing.process_ms, 0.99),
        "feed_cpu_cores": cpu / wall,
        "feed_rss_start_mb": ys[0],
        "feed_rss_end_mb": ys[-1],
        "feed_rss_slope_mb_per_min": slope,
        "feed_measure_s": round(wall),
    }
