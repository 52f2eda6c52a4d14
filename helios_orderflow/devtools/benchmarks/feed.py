"""Live feed load from the local exchange, through the real ccxt.pro client, the engine, SharedState and the
recorder, at two loads on Binance (the same load on OKX and Bybit: ``feed_venues``):

- the issue's load (figures ``feed_*``): 20 pairs x 10 messages/s, i.e. every pair's ``@depth@100ms``
  diff stream (200 messages/s), with default settings, for 10 minutes after a 3-minute warm-up;
- a heavier one (``feed_full_*``): the same pairs with their trades and best bid/offer streams too
  (~36 messages/s a pair, ~730/s), for 2 minutes after a 30 s warm-up.

The exchange runs in its own process (``helios exchange --synthetic``, 20 symbols), so this process's CPU
is the feed's alone. It sends every pair's messages of a 100 ms step at once; each pair's book comes on its
own connection (ccxt's Binance client spreads subscriptions over streams), so the feed thread reads 20
sockets in one burst and handles their frames one after the other: the later frames wait for the earlier
ones. Every pair's heatmap column (500 ms) and wall scan (2 s) fall due in the same burst; the feed defers
them until the burst is published (``PairEngine(defer_timers=True)``). Figures:

- ``state_read_us``: one ``SharedState.get(pair)`` plus reading a field of its engine state, from another
  thread while the feed publishes (mean over many reads); ``state_healthy_us``: one ``is_healthy(pair)``.
- ``feed_book_p50_ms`` / ``feed_book_p99_ms`` (and ``feed_full_book_p99_ms``, ``feed_full_trade_p99_ms``):
  from a websocket frame's receipt (the socket read that brought its bytes in) to the publication of the
  SharedState snapshot that includes it, for depth diffs and trades, waiting behind the other frames of
  the same read included. ``*_handled_p99_ms``: the same, counted from when ccxt starts handling the
  frame; ``feed_book_own_p99_ms``: the feed's own share (diff, engine, snapshot).
- ``feed_cpu_cores``: this process's CPU time over wall time while measuring (feed thread, ccxt,
  engine, recorder thread).
- ``feed_rss_start_mb`` / ``feed_rss_end_mb`` / ``feed_rss_slope_mb_per_min``: resident memory after the
  warm-up, at the end, and its least-squares slope over the measurement (sampled every second), with
  default settings. The recorder holds each stream's open segment (``recording.segment_s``, 60 s) in
  memory, so RSS is a sawtooth of that period: ``feed_rss_peak_first_2min_mb`` / ``_last_2min_mb`` are
  its peaks over the first and last two minutes and ``feed_rss_growth_pct`` the change between them
  (the soak's method). One transient spike in the last two minutes moves that figure by its size;
  ``feed_rss_minute_peaks_growth_pct`` does not: it takes each whole minute's peak and compares the median
  of the last three with the median of the first three. The 1 h heatmap ring is written through when
  allocated, so it does not creep; the feed pins glibc's mmap threshold, without which the heap
  fragments (see helios_orderflow/live/malloc.py).
  The exchange runs its market 15 simulated minutes before serving (``--warm-up-minutes``): a freshly
  seeded synthetic book fills up over about ten, which a memory figure would otherwise count as growth.
  ``feed_book_levels_start``/``_end`` count the levels in the engines' books, and
  ``feed_rss_slope_2nd_half_mb_per_min`` is the slope over the last five minutes only. The warm-up is
  three recorder segments long: the allocators' working sets (glibc's heap, the interpreter's interned
  string table, which pathlib churns with every segment file name) step up in the first minutes.
  With ``quick`` (10 s warm-up, 40 s) the recorder's first segments are still open: its RSS slope is not a leak measure.
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

from helios_orderflow.book.diff import BookDiffer
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator.dialects import dialect_class
from helios_orderflow.emulator.instruments import instrument
from helios_orderflow.emulator.process import start_subprocess
from helios_orderflow.live.feed import Feed
from helios_orderflow.live.state import PairSnapshot, SharedState

PAIRS = 20
_BASES = ["BTC", "ETH", "BNB", "SOL", "XRP", "DOGE", "ADA", "LTC", "LINK", "AVAX",
          "DOT", "TRX", "ATOM", "NEAR", "UNI", "FIL", "APT", "ARB", "OP", "SUI"]
SYMBOLS = [f"{b}/USDT" for b in _BASES[:PAIRS]]
WARM_UP_MINUTES = 15  # the exchange's market runs this long before serving: its books are full


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def quantile(samples: Any, q: float) -> float:
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


class _Receipts:
    """When each websocket message came off the socket.

    aiohttp parses every read into its message queue (a C class, not patchable); its protocol's
    ``data_received`` is Python. Wrapped, it notes the time and how many messages the read added. A message
    being handled is then found by position: messages fed to the queue minus those still in it.
    """

    def __init__(self) -> None:
        self.fed: dict[int, int] = {}  # id(queue) -> messages fed so far
        self.chunks: dict[int, list[tuple[int, int]]] = {}  # id(queue) -> [(fed after the read, ns)]

    def install(self) -> Any:
        from aiohttp.client_proto import ResponseHandler

        original = ResponseHandler.data_received
        receipts = self

        # Replaces the method, so it has the method's signature (``self`` is the protocol).
        def data_received(self: ResponseHandler, data: bytes) -> None:
            q = getattr(self, "_payload", None)
            buf = getattr(q, "_buffer", None)
            if buf is None:
                return original(self, data)
            now = time.perf_counter_ns()
            before = len(buf)
            original(self, data)
            added = len(buf) - before
            if added > 0:
                key = id(q)
                fed = receipts.fed.get(key, 0) + added
                receipts.fed[key] = fed
                chunks = receipts.chunks.setdefault(key, [])
                chunks.append((fed, now))
                if len(chunks) > 64:
                    del chunks[:32]

        # Instrumentation: patching aiohttp's protocol class for the run is the point (restored after).
        ResponseHandler.data_received = data_received  # type: ignore[method-assign]
        return original

    def of(self, client: Any) -> int | None:
        """Receipt time (perf_counter ns) of the message ``client`` is handling now."""
        try:
            q = client.connection._conn.protocol._payload
            remaining = len(q._buffer)
        except AttributeError:
            return None
        key = id(q)
        index = self.fed.get(key, 0) - remaining - 1  # 0-based position of the message being handled
        for end, ns in self.chunks.get(key, ()):
            if index < end:
                return ns
        return None


class _Timing:
    """Frame arrival stamps per pair and the delays to their publication (feed thread only)."""

    def __init__(self, venue: str = "binance") -> None:
        self.venue = venue
        self.receipts = _Receipts()
        self.book_pending: dict[str, int] = {}
        self.book_handled: dict[str, int] = {}
        self.trade_pending: dict[str, int] = {}
        # Preallocated and pre-touched, so the samples themselves do not show up as RSS growth.
        self.book_ms = _Samples()
        self.book_handled_ms = _Samples()
        self.observed: dict[str, int] = {}  # when the feed's book loop got the book back from ccxt
        self.process_ms = _Samples()
        self.trade_ms = _Samples()
        self.recording = False
        wire = dialect_class(venue).wire
        self.by_wire = {wire(instrument(s)).lower(): s for s in SYMBOLS}

    def on_frame(self, client: Any, message: Any) -> None:
        kind, wire = _classify(self.venue, message)
        symbol = self.by_wire.get(wire.lower()) if kind else None
        if symbol is None:
            return
        now = time.perf_counter_ns()
        received = self.receipts.of(client) or now
        if kind == "book":
            self.book_pending.setdefault(symbol, received)
            self.book_handled.setdefault(symbol, now)
        elif kind == "trade":
            self.trade_pending.setdefault(symbol, received)


    def on_publish(self, old: PairSnapshot | None, new: PairSnapshot) -> None:
        now = time.perf_counter_ns()
        s = new.symbol
        if old is not None and new.health.last_book_mono_s != old.health.last_book_mono_s:
            t = self.book_pending.pop(s, None)
            if t is not None and self.recording:
                self.book_ms.append((now - t) / 1e6)
            t = self.book_handled.pop(s, None)
            if t is not None and self.recording:
                self.book_handled_ms.append((now - t) / 1e6)
            t = self.observed.pop(s, None)
            if t is not None and self.recording:
                self.process_ms.append((now - t) / 1e6)
        if old is not None and new.health.trades != old.health.trades:
            t = self.trade_pending.pop(s, None)
            if t is not None and self.recording:
                self.trade_ms.append((now - t) / 1e6)


def _classify(venue: str, message: Any) -> tuple[str, str]:
    """("book" or "trade" or "", the venue's symbol name) of one parsed websocket message."""
    if not isinstance(message, dict):
        return "", ""
    if venue == "okx":
        arg = message.get("arg")
        if not isinstance(arg, dict) or "data" not in message:
            return "", ""
        kind = {"books": "book", "trades": "trade"}.get(str(arg.get("channel")), "")
        return kind, str(arg.get("instId", ""))
    if venue == "bybit":
        topic = str(message.get("topic", ""))
        kind = "book" if topic.startswith("orderbook.") else "trade" if topic.startswith("publicTrade.") else ""
        return kind, topic.rpartition(".")[2]
    data = message.get("data", message)
    if not isinstance(data, dict):
        return "", ""
    kind = {"depthUpdate": "book", "trade": "trade"}.get(str(data.get("e")), "")
    return kind, str(data.get("s", ""))


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
            timing.on_frame(client, message)
            return handle(client, message)

        ex.handle_message = timed  # clients created later pick up the instance attribute

    return hook


@contextlib.contextmanager
def _time_observations(timing: _Timing) -> Iterator[None]:
    """Stamp socket reads, and when the feed hands ccxt's book to its differ (the start of its own work)."""
    from aiohttp.client_proto import ResponseHandler

    data_received = timing.receipts.install()
    observe = BookDiffer.observe

    def timed(self: BookDiffer, book: Any, local_ts_us: int) -> Any:
        timing.observed[self.symbol] = time.perf_counter_ns()
        return observe(self, book, local_ts_us)

    # Instrumentation: the methods are patched for the measured run only and restored below.
    BookDiffer.observe = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        BookDiffer.observe = observe  # type: ignore[method-assign]
        ResponseHandler.data_received = data_received  # type: ignore[method-assign]


def _book_levels(feed: Feed) -> int:
    """Price levels in every pair's engine book (both sides): flat when the exchange's market is warmed up."""
    return sum(len(p.engine.book.bids) + len(p.engine.book.asks)
               for p in feed._pairs.values() if p.engine is not None)


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


def measure(feed_settings: dict[str, Any], warmup_s: float, measure_s: float,
             venue: str = "binance") -> dict[str, Any]:
    """Run the feed on 20 pairs against the exchange subprocess speaking ``venue``; the raw figures of one load."""
    timing = _Timing(venue)
    with tempfile.TemporaryDirectory(prefix="helios-bench-feed-") as tmp, _time_observations(timing):
        proc = start_subprocess(["--synthetic", "--venue", venue, "--seed", "7", "--warm-up-minutes",
                                 str(WARM_UP_MINUTES), "--symbols", *SYMBOLS], Path(tmp) / "exchange.log")
        try:
            settings = HeliosSettings.from_dict({"feed": feed_settings})
            exchange_id = dialect_class(venue).ccxt_id("spot")
            state = _TimedState(exchange_id, SYMBOLS, settings.health)
            state.timing = timing
            feed = Feed(exchange_id, SYMBOLS, settings, ccxt_config=proc.ccxt_config(), record_to=Path(tmp) / "rec",
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
                levels = [_book_levels(feed)]
                while time.monotonic() - wall0 < measure_s:
                    time.sleep(1.0)
                    rss.append((time.monotonic() - wall0, _rss_mb()))
                    if len(rss) % 5 == 1:  # levels every 5 s
                        levels.append(_book_levels(feed))
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
    half = len(rss) // 2
    # The recorder's open segments (recording.segment_s, 60 s) make RSS a sawtooth: compare its peaks over
    # whole periods at the start and the end (the soak's method), not single samples.
    window = min(120.0, wall / 3)
    first_peak = max(m for t, m in rss if t <= window)
    last_peak = max(m for t, m in rss if t >= wall - window)
    return {
        "timing": timing, "reads": reads, "healthy": healthy, "events_per_s": events / wall,
        "cpu_cores": cpu / wall, "rss": ys, "measure_s": wall,
        "rss_slope": statistics.linear_regression(xs, ys).slope * 60 if len(rss) > 2 else float("nan"),
        "rss_slope_2nd_half": (statistics.linear_regression(xs[half:], ys[half:]).slope * 60
                               if len(rss) - half > 2 else float("nan")),
        "rss_samples": rss, "levels": levels, "rss_peaks": (first_peak, last_peak),
        "rss_peak_growth": peak_growth_pct(rss),
    }


def peak_growth_pct(samples: list[tuple[float, float]], period_s: float = 60.0, periods: int = 3) -> float:
    """Growth of a sawtooth's peaks that one transient spike does not move: the peak of each whole
    ``period_s`` window of ``(t, value)`` samples, then the median of the last ``periods`` peaks against the
    median of the first ``periods`` (fewer when the series is short), in percent."""
    peaks: dict[int, float] = {}
    for t, v in samples:
        k = int(t // period_s)
        peaks[k] = max(v, peaks.get(k, v))
    whole = [peaks[k] for k in sorted(peaks) if (k + 1) * period_s <= samples[-1][0] + 1e-9]
    n = min(periods, len(whole) // 2)
    if n == 0:
        return float("nan")
    return (statistics.median(whole[-n:]) / statistics.median(whole[:n]) - 1) * 100


def run(quick: bool = False) -> dict[str, float | int | str]:
    spec = measure({"trades": False, "bbo": False}, *((10.0, 40.0) if quick else (180.0, 600.0)))
    full = measure({}, *((10.0, 30.0) if quick else (30.0, 120.0)))
    t, f = spec["timing"], full["timing"]
    return {
        "state_read_us": spec["reads"].get("get_us", float("nan")),
        "state_healthy_us": spec["reads"].get("healthy_us", float("nan")),
        "feed_pairs": len(SYMBOLS),
        "feed_pairs_healthy_at_end": spec["healthy"],
        "feed_messages_per_s": spec["events_per_s"],
        "feed_book_frames_timed": len(t.book_ms),
        "feed_book_p50_ms": quantile(t.book_ms, 0.5),
        "feed_book_p99_ms": quantile(t.book_ms, 0.99),
        "feed_book_handled_p99_ms": quantile(t.book_handled_ms, 0.99),
        "feed_book_own_p99_ms": quantile(t.process_ms, 0.99),
        "feed_cpu_cores": spec["cpu_cores"],
        "feed_rss_start_mb": spec["rss"][0],
        "feed_rss_end_mb": spec["rss"][-1],
        "feed_rss_slope_mb_per_min": spec["rss_slope"],
        "feed_rss_slope_2nd_half_mb_per_min": spec["rss_slope_2nd_half"],
        "feed_rss_peak_first_2min_mb": spec["rss_peaks"][0],
        "feed_rss_peak_last_2min_mb": spec["rss_peaks"][1],
        "feed_rss_growth_pct": (spec["rss_peaks"][1] / spec["rss_peaks"][0] - 1) * 100,
        "feed_rss_minute_peaks_growth_pct": spec["rss_peak_growth"],
        "feed_book_levels_start": spec["levels"][0],
        "feed_book_levels_end": spec["levels"][-1],
        "feed_measure_s": round(spec["measure_s"]),
        "feed_full_pairs_healthy_at_end": full["healthy"],
        "feed_full_events_per_s": full["events_per_s"],
        "feed_full_book_p50_ms": quantile(f.book_ms, 0.5),
        "feed_full_book_p99_ms": quantile(f.book_ms, 0.99),
        "feed_full_book_handled_p99_ms": quantile(f.book_handled_ms, 0.99),
        "feed_full_trade_p99_ms": quantile(f.trade_ms, 0.99),
        "feed_full_cpu_cores": full["cpu_cores"],
        "feed_full_rss_slope_mb_per_min": full["rss_slope"],
    }
