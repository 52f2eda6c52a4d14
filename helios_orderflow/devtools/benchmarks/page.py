"""The liquidity page live, in a real headless Chromium: payload per push, render time per update with both
chart libraries, and the page's JS heap after an hour of live updates (``make bench``, ``--only page``).

What runs: the page (``dashboard.app.run_in_thread``) over a live source whose history a feeder grows one
1-second column at a time, with a synthetic BTC/USDT-like market (125 bins, resting sizes drifting, a wall,
~3 trades a second near the mid, one 1 m candle a minute with VWAP bands, CVD and OFI). Each column is pushed
to the page over its WebSocket as live (one ``columns`` message per column, as a live page gets one a
second); the feeder adds the next column once the server has sent the last and the page holds at most two
unapplied. The first 100 pushes carry one column each (the payload and render medians are theirs); the rest
carry 20 columns each, because an update costs ~0.1-0.2 s of the browser here (mostly Plotly redrawing the
SVG trade bubbles) and 3600 single pushes would take ~10 minutes: so the page receives an hour of market
(``--quick``: 10 minutes) in 100 + 175 pushes, faster than real time, with the default views (heatmap, volume
profiles, candle panes). Each push still carries whole columns, applied as live ones are.

- ``page_push_bytes_median``: UTF-8 size of a ``columns`` message (heatmap column, best bid/ask, bubbles,
  walls/signals, session profile, footprint cells of the open candle, the Lightweight Charts payload).
- ``page_update_plotly_ms_median`` / ``page_update_lw_ms_median`` / ``page_update_ms_median``: per update, in the
  browser (``performance.now()``): applying the message and ``Plotly.redraw``, then Lightweight Charts' ``setData``
  up to its next painted frame, and both (assets/live.js ``heliosTimings.update``).
- ``page_heap_at_market_min`` / ``page_heap_mb``: the page's used JS heap (Chrome DevTools' ``JSHeapUsedSize``
  after a forced garbage collection, the page idle) once the figure's sliding window is full (after 600 market
  seconds), then every 10 minutes of market (``HELIOS_PAGE_BENCH_HEAP_EVERY_S``) and after the last push;
  ``page_heap_updates``: the updates the page had applied by each reading; ``page_heap_mb_start`` / ``_end`` /
  ``page_heap_ratio``: the first and last readings.
- From a heap snapshot at every reading (``HELIOS_PAGE_BENCH_SNAPSHOTS=DIR`` keeps them, DevTools can open them;
  object ids stay the same from one to the next, so DevTools' comparison shows what was allocated in between):
  ``page_heap_code_mb``: what V8 files as code (DevTools' "Code": bytecode, function infos, feedback, machine
  code); ``page_heap_harness_mb``: what the benchmark's browser driver holds in the page's heap (chromedriver
  keeps the reply of every ``execute_script``, ~80 bytes, for as long as the page is open: ~0.3 MB after an
  hour at the live rate; a page without a driver has none of it); ``page_heap_data_mb``: the rest, the page's
  own data (figures, traces, charts, logs, DOM wrappers). ``_start`` / ``_end`` are the first and last
  readings, ``page_heap_data_ratio`` their ratio. ``page_optimised_functions`` (functions with machine code
  from V8's optimising compilers) and ``page_js_functions`` (the page's JS function objects), at each reading.
- ``page_heap_flat`` (yes/no), by the rule printed as ``page_heap_flat_rule``: the least-squares slope of
  ``page_heap_data_mb`` over the readings in the run's second half (``page_heap_data_slope_mb_per_h_last_half``,
  MB per hour of market) is at most ``FLAT_MB_PER_H``. The code is judged apart: bounded when the function
  count does not grow (no function is made per push) while more of those functions get optimised (below).

Why the code grows, and why it stops. V8 (Chromium 156) compiles a function with Maglev once it has run about 400
calls' worth of its own bytecode (``--invocation-count-for-maglev=400``) and with TurboFan at about 3000
(``--invocation-count-for-turbofan=3000``). An update runs a fixed set of Plotly, Dash, React, Lightweight Charts
and live.js functions, most of them once or a few times: each gets optimised after some hundreds to thousands of
updates, one machine-code object per function (snapshot diffs: every optimised code belongs to a distinct
function of the scripts the page loaded; the page's JS functions stay within a dozen over the hour, 26,789 ->
26,800 over ~285 updates: none is made per update). The code therefore grows with the number of updates the page
has had, up to the code of every function an update runs, and stops there. The bench's hour of market is only
~285 updates (a live page has 3600 in an hour), so its readings fall in that warm-up.
``HELIOS_PAGE_BENCH_JS_FLAGS`` passes flags to V8: with the tier-up thresholds divided by 100
(``--invocation-count-for-maglev=4 --invocation-count-for-turbofan=30 --minimum-invocations-after-ic-update=5
--invocation-count-for-maglev-osr=1 --invocation-count-for-osr=5``) most of the warm-up is over before the first
reading and the heap levels off: 23.23 / 23.81 / 24.02 / 24.08 MB at 10 / 20 / 40 / 60 minutes (1,677 -> 1,736
optimised functions), against 20.54 / 20.90 / 21.31 / 21.54 MB with V8's defaults (1,179 -> 1,396).

What grew, found by heap-snapshot diffs (DevTools protocol) between readings, and fixed:
  * Plotly's cache of text measurements (``Drawing.savedBBoxes``), keyed by each time label's text and pixel
    position, which every push of a sliding time axis changes: ~10 entries (~4 KB) a push, emptied only at
    10,000 entries (~4 MB). The figure has Plotly skip those measurements (figures.py ``_layout``;
    assets/live.js hides labels cut by the page's edge); the cache keeps ~40 entries.
  * After a redraw, Dash kept the old figure (React's previous props of the graph, the graph's event
    handlers), whose traces live.js had grown: ~1 MB a redraw. live.js empties them once another is drawn.
  What is left of the data's growth over the bench's default hour (8.07 -> 8.22 MB) is V8's lists of the
  optimised code that depends on each object shape (~0.09 MB; they grow with the code) and the page's timing
  logs (~0.05 MB, one entry per update in each of five logs), which stop at 1,000 entries; the browser's own
  performance-entry buffers (resource timings, long animation frames) stop at 250 and 200. After a redraw the
  footprint trace holds ~600 cells instead of ~80, as designed: the redrawn figure spans the hour's window (450
  columns of 8 s, 60 candles, ~10 cells each) where the first spanned at most 480 columns of 1 s (8 candles,
  ~10 cells each).

At the live rate (2026-12-04: ``HELIOS_PAGE_BENCH_MARKET_S=3600 HELIOS_PAGE_BENCH_COLUMNS_PER_PUSH=1
HELIOS_PAGE_BENCH_HEAP_EVERY_S=300 HELIOS_PAGE_BENCH_SNAPSHOTS=DIR``, 3,600 updates, 18 minutes here), the heap
without code grew 8.32 -> 8.84 MB (+0.52 MB) at 10 ... 60 minutes. Snapshot diffs between the 11 readings:
  * +0.21 MB is the driver's, not the page's: chromedriver's replies to the bench's ``execute_script`` calls,
    608 -> 3,628 handles at ~80 bytes (0.05 -> 0.26 MB), linear in the calls (``page_heap_harness_mb``);
  * +0.06 MB is the page's timing logs filling up to their cap, all of it by minute 20 (the ``update`` log
    49 -> 89 KB, ``append`` 23 -> 40 KB, then level: 87 and 40 KB at minute 60);
  * the rest levels off from minute 20: the page's data (``page_heap_data_mb``, heap without code and driver)
    8.26 8.37 8.45 8.48 8.48 8.50 8.52 8.52 8.53 8.52 8.58 MB at 10, 15, ... 60 minutes, slope over the second
    half 0.14 MB/h (flat by the rule above; 0.17 MB/h from the 10-minute readings alone). Most of that
    slope is the last reading's +0.06 MB, not yet attributed (Dash's store holds 23 KB more than at minute 55;
    the rest is spread thinly): the JS objects of the snapshots (self sizes, driver excluded) are 7.256 7.266
    7.265 7.266 7.277 7.278 7.277 7.261 MB from minute 20 to 55 (slope 0.004 MB/h) and 7.317 at 60.
  Code at the live rate: 13.73 -> 13.23 MB, V8 dropping and recompiling code as it goes (12.80 - 13.97 MB),
  1,525 -> 1,563 optimised functions, 26,789 -> 26,792 JS functions: bounded.

Environment: ``HELIOS_PAGE_BENCH_MARKET_S`` (seconds of market, default 3600; 10800, three hours, takes about
3 minutes here) and ``HELIOS_PAGE_BENCH_COLUMNS_PER_PUSH`` (default 20; 1 pushes every column alone, as live:
an hour then takes 15-20 minutes here); ``HELIOS_PAGE_BENCH_HEAP_EVERY_S`` (market seconds between heap
readings, default 600); ``HELIOS_PAGE_BENCH_SNAPSHOTS`` (a directory that keeps each reading's heap snapshot,
~55 MB each); ``HELIOS_PAGE_BENCH_JS_FLAGS`` (V8's flags for Chromium's ``--js-flags``, above).
``run(quick, probe=...)`` calls ``probe(market_s, driver)`` after each heap reading.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

#: Where the heap is first read (market seconds pushed): the figure's window (480 display columns) and the
#: candles' are full by then.
WARM_S = 600
#: The first pushes carry one column each, as live (the payload and render medians are theirs) ...
SINGLE_PUSHES = 100
#: ... the rest several, so an hour of market reaches the page within the benchmark's few minutes.
COLUMNS_PER_PUSH = 20
#: After the first, the heap is read every this many market seconds (``HELIOS_PAGE_BENCH_HEAP_EVERY_S``).
HEAP_EVERY_S = 600
#: The page's memory is called flat when the least-squares slope of its data (the heap without V8's code and
#: the driver's replies) over the readings of the run's second half is at most this many MB per hour of market:
#: about 3 % of the page's ~8.5 MB of data an hour. One reading varies by ~0.05 MB, which moves a slope over
#: four readings 10 minutes apart by ~0.1 MB/h; the leaks found so far grew 14 MB/h (module docstring).
FLAT_MB_PER_H = 0.25


class GrowingSource:
    """A live source over one PairHistory that its caller grows column by column (what the page needs of
    ``DashboardSource``; this benchmark's market, and tests/test_dashboard_push.py)."""

    timeframe = "1m"

    def __init__(self, hist: Any) -> None:
        self.hist = hist
        self.key = f"{hist.exchange} {hist.symbol}"

    @property
    def live(self) -> bool:
        return True

    def pairs(self) -> list[str]:
        return [self.key]

    def history(self, pair: str) -> Any:
        return self.hist if pair == self.key else None

    def health(self, pair: str) -> Any:
        from dashboard.sources import Health

        return Health("ok", "growing")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class _Market:
    """A seeded synthetic market written into a PairHistory one second at a time."""

    def __init__(self, hist: Any, t0_us: int, seed: int = 11) -> None:
        from helios_orderflow.engine.candles import CandleFeatures

        self.CandleFeatures = CandleFeatures
        self.h = hist
        self.t0 = t0_us
        self.rng = np.random.default_rng(seed)
        self.anchor = int(61_700.0 // hist.bin_size)
        w = 2 * hist.half_bins + 1
        self.profile = self.rng.lognormal(0.0, 0.8, size=w).astype(np.float32)
        self.cvd = 0.0
        self.candles: list[Any] = []
        self.bar: list[float] = []  # trade prices of the open candle
        self.vol = 0.0
        self.buy = 0.0

    def step(self, i: int) -> None:
        h = self.h
        w = 2 * h.half_bins + 1
        rng = self.rng
        if i % 7 == 0:
            self.anchor += int(rng.choice([-1, 0, 1]))
        if i % 10 == 0:
            self.profile *= rng.lognormal(0.0, 0.05, size=w).astype(np.float32)
        liq = self.profile.copy()
        liq[(i // 300) % w] += 40.0  # a wall that moves every 5 minutes
        buy = np.zeros(w, np.float32)
        sell = np.zeros(w, np.float32)
        k = int(rng.poisson(3))
        js = np.clip(h.half_bins + rng.integers(-3, 4, size=k), 0, w - 1)
        amts = rng.lognormal(-3.0, 1.2, size=k).astype(np.float32)
        sides = rng.random(k) < 0.5
        np.add.at(buy, js[sides], amts[sides])
        np.add.at(sell, js[~sides], amts[~sides])
        self.cvd += float(amts[sides].sum() - amts[~sides].sum())
        prices = (self.anchor - h.half_bins + js + 0.5) * h.bin_size
        self.bar += prices.tolist()
        self.vol += float(amts.sum())
        self.buy += float(amts[sides].sum())
        ts = self.t0 + i * h.column_us
        bid = (self.anchor + 0.5) * h.bin_size - 0.01
        h.add_column(ts, self.anchor, liq, buy, sell, (bid, bid + 0.01, self.cvd, 0.3 * i))
        if (i + 1) % 60 == 0:  # a 1 m candle closes
            self._close(ts + h.column_us - 60_000_000)

    def _close(self, open_us: int) -> None:
        p = self.bar or [self.candles[-1].close if self.candles else 61_700.0]
        vw = float(np.mean(p))
        values: dict[str, Any] = dict.fromkeys((f.name for f in dataclasses.fields(self.CandleFeatures)), float("nan"))
        values.update(open_time_us=open_us, open=p[0], high=max(p), low=min(p), close=p[-1], volume=self.vol,
                      trades=len(self.bar), buy_volume=self.buy, sell_volume=self.vol - self.buy,
                      delta=2 * self.buy - self.vol, cvd=self.cvd, cvd_total=self.cvd, vwap=vw, vwap_upper_1=vw + 5,
                      vwap_lower_1=vw - 5, vwap_upper_2=vw + 10, vwap_lower_2=vw - 10, ofi=0.1, ofi_multi=0.1)
        c = self.CandleFeatures(**values)
        self.candles.append(c)
        self.candles = self.candles[-500:]
        self.h.set_state(None, self.candles, "1m")
        self.bar, self.vol, self.buy = [], 0.0, 0.0


def _driver() -> tuple[Any, str]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        raise RuntimeError("the page benchmark needs Chromium and chromedriver (Debian: apt-get install chromium "
                           "chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--window-size=1600,1000"):
        opts.add_argument(flag)
    if os.environ.get("HELIOS_PAGE_BENCH_JS_FLAGS"):  # V8's flags, e.g. its tier-up thresholds (module docstring)
        opts.add_argument("--js-flags=" + os.environ["HELIOS_PAGE_BENCH_JS_FLAGS"])
    profile = tempfile.mkdtemp(prefix="helios-bench-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(chromedriver), options=opts), profile


def _heap_mb(driver: Any) -> float:
    driver.execute_cdp_cmd("HeapProfiler.collectGarbage", {})
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize") / 1e6


class HeapSnapshots:
    """V8 heap snapshots of the page (JSON text; DevTools' Memory tab). They stream as DevTools protocol events,
    which selenium's ``execute_cdp_cmd`` does not return: taken over a second DevTools connection to the page,
    kept open between snapshots so that an object keeps its snapshot id from one snapshot to the next (V8 forgets
    the ids when the heap profiler is disabled, as it is when its connection closes): the objects of a later
    snapshot whose ids an earlier one lacks were allocated in between, as DevTools' comparison view shows."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.ws: Any = None
        self.calls = 0

    def _call(self, method: str, params: dict[str, Any], chunks: list[str] | None = None) -> None:
        import json

        self.calls += 1
        self.ws.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.calls:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return
            if chunks is not None and msg.get("method") == "HeapProfiler.addHeapSnapshotChunk":
                chunks.append(msg["params"]["chunk"])

    def take(self) -> str:
        if self.ws is None:
            import json
            import urllib.request

            import websocket  # websocket-client, a dependency of selenium

            addr = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
            with urllib.request.urlopen(f"http://{addr}/json") as r:
                target = next(t for t in json.load(r) if t["type"] == "page")
            self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], suppress_origin=True, timeout=300)
            self._call("HeapProfiler.enable", {})
        chunks: list[str] = []
        self._call("HeapProfiler.takeHeapSnapshot", {"reportProgress": False}, chunks)
        return "".join(chunks)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


@dataclasses.dataclass(frozen=True)
class CodeFigures:
    """What a heap snapshot says of the page's compiled code: ``code_mb``, the objects V8 files as code
    (DevTools' "Code": bytecode, function infos, feedback, compiled machine code and its metadata);
    ``optimised`` functions (machine code from V8's optimising compilers, Maglev or TurboFan: a Code object
    with deoptimisation data); ``functions``, the page's JS function objects (a page that made functions per
    push, with ``new Function``, ``eval`` or closures kept alive, would have more at each reading).

    ``harness_mb`` / ``harness_handles``: what the benchmark's own browser driver holds in the page's heap, not
    the page: chromedriver leaves the result of every ``execute_script`` (a one-element array holding the JSON
    text of the reply, ~80 bytes) behind a DevTools handle ("DevTools console") for as long as the page is open;
    the benchmark calls it at least once a push."""

    code_mb: float
    optimised: int
    functions: int
    harness_mb: float = 0.0
    harness_handles: int = 0


def code_figures(snapshot: str) -> CodeFigures:
    """``CodeFigures`` of a V8 heap snapshot (``HeapSnapshots.take``)."""
    import json

    s = json.loads(snapshot)
    meta = s["snapshot"]["meta"]
    nf, ef = meta["node_fields"], meta["edge_fields"]
    node_types, edge_types = meta["node_types"][0], meta["edge_types"][0]
    nodes = np.asarray(s["nodes"], dtype=np.int64).reshape(-1, len(nf))
    edges = np.asarray(s["edges"], dtype=np.int64).reshape(-1, len(ef))
    ntype, size = nodes[:, nf.index("type")], nodes[:, nf.index("self_size")]
    code_mb = float(size[ntype == node_types.index("code")].sum()) / 1e6
    functions = int((ntype == node_types.index("closure")).sum())
    etype, ename, eto = edges[:, ef.index("type")], edges[:, ef.index("name_or_index")], edges[:, ef.index("to_node")]
    named = ~np.isin(etype, [edge_types.index("element"), edge_types.index("hidden")])
    first = np.concatenate([[0], np.cumsum(nodes[:, nf.index("edge_count")])])
    # the driver's handles: each holds an array, its elements' store and the reply's text
    labels = [i for i, t in enumerate(s["strings"]) if "DevTools console" in t]
    held = eto[named & np.isin(ename, labels)] // len(nf)
    harness = int(size[held].sum())
    for n in held.tolist():
        for e in range(first[n], first[n + 1]):
            if etype[e] == edge_types.index("internal") and s["strings"][ename[e]] == "elements":
                store = eto[e] // len(nf)
                harness += int(size[store]) + int(size[eto[first[store]:first[store + 1]] // len(nf)].sum())
    try:
        deopt = s["strings"].index("deoptimization_data")
    except ValueError:
        return CodeFigures(code_mb, 0, functions, harness / 1e6, len(held))
    to = eto[named & (ename == deopt)] // len(nf)
    # Code that is not optimised points at the one shared empty array
    return CodeFigures(code_mb, int((size[to] > 8).sum()), functions, harness / 1e6, len(held))


def _wait(driver: Any, script: str, timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = driver.execute_script(script)
        except Exception:  # scripts still loading
            got = None
        if got:
            return got
        time.sleep(0.005)
    raise RuntimeError(f"the page did not get there in {timeout} s: {script}")


def _env_int(name: str, default: int, least: int, example: str) -> int:
    env = os.environ.get(name)
    if not env:
        return default
    try:
        v = int(env)
    except ValueError:
        raise ValueError(f"{name}={env!r}: expected a whole number, e.g. {example}") from None
    if v < least:
        raise ValueError(f"{name}={v}: at least {least}, e.g. {example}")
    return v


def market_seconds(quick: bool) -> int:
    """Seconds of market the benchmark pushes: an hour (``--quick``: 10 minutes), or
    ``HELIOS_PAGE_BENCH_MARKET_S`` (at least twice the warm-up, so the heap is read past it; e.g. 10800)."""
    return _env_int("HELIOS_PAGE_BENCH_MARKET_S", 600 if quick else 3600, 2 * WARM_S, "10800 for three hours")


def columns_per_push() -> int:
    """Columns a push carries after the first ``SINGLE_PUSHES``: ``COLUMNS_PER_PUSH``, or
    ``HELIOS_PAGE_BENCH_COLUMNS_PER_PUSH`` (1: every push one column, as a live page gets them)."""
    return _env_int("HELIOS_PAGE_BENCH_COLUMNS_PER_PUSH", COLUMNS_PER_PUSH, 1, "1 for live-rate pushes")


def heap_every_s() -> int:
    """Market seconds between heap readings after the first: ``HEAP_EVERY_S``, or
    ``HELIOS_PAGE_BENCH_HEAP_EVERY_S`` (e.g. 300)."""
    return _env_int("HELIOS_PAGE_BENCH_HEAP_EVERY_S", HEAP_EVERY_S, 60, "300 for a reading every 5 minutes")


def flat_verdict(readings: list[tuple[int, float]], market_s: int) -> tuple[float, bool]:
    """(slope in MB per hour of market, flat) of the non-code heap ``readings`` ((market seconds, MB) pairs):
    the least-squares slope over the readings taken in the run's second half (``at >= market_s / 2``; the two
    last readings if fewer fall there), flat when it is at most ``FLAT_MB_PER_H``."""
    half = [(t, v) for t, v in readings if t >= market_s / 2]
    if len(half) < 2:
        half = readings[-2:]
    if len(half) < 2:
        raise ValueError("the verdict needs at least two readings")
    t = np.array([h for h, _ in half], dtype=float) / 3600.0
    v = np.array([mb for _, mb in half], dtype=float)
    slope = float(np.polyfit(t, v, 1)[0])
    return slope, slope <= FLAT_MB_PER_H


def run(quick: bool, probe: Callable[[int, Any], None] | None = None) -> dict[str, float | int | str]:
    """The benchmark's lines. ``probe(market_s, driver)``, if given, is called after each heap reading (the
    page idle, its garbage collected): e.g. to take a heap snapshot there."""
    from dashboard.app import run_in_thread
    from dashboard.history import PairHistory
    from dashboard.settings import DashboardSettings

    market_s = market_seconds(quick)
    per_push = columns_per_push()
    every_s = heap_every_s()
    keep_dir = os.environ.get("HELIOS_PAGE_BENCH_SNAPSHOTS")  # where to keep each reading's heap snapshot
    if keep_dir:
        os.makedirs(keep_dir, exist_ok=True)
    t0 = 1_723_161_600_000_000
    hist = PairHistory("synthetic", "BTC/USDT", 5.0, 62, 1_000_000, 3600, sample_us=1_000_000)
    market = _Market(hist, t0)
    for i in range(120):  # two minutes of history before the page opens
        market.step(i)
    handle = run_in_thread(GrowingSource(hist), DashboardSettings(port=0))
    driver, profile = _driver()
    snapshots = HeapSnapshots(driver)
    warm_s = market_s // 3 if market_s < 2 * WARM_S else WARM_S
    heap: list[tuple[int, float]] = []  # (market seconds pushed, MB)
    code: list[CodeFigures] = []  # at each reading
    updates: list[int] = []  # updates the page had applied at each reading

    def read_heap(at_s: int) -> None:
        _wait(driver, "return heliosPush.pending.length === 0", 120)
        time.sleep(0.3)  # the last update's animation frame
        heap.append((at_s, _heap_mb(driver)))
        updates.append(int(driver.execute_script("return heliosPush.applied")))
        snap = snapshots.take()
        code.append(code_figures(snap))
        if keep_dir:
            with open(os.path.join(keep_dir, f"page-{at_s // 60:04d}min.heapsnapshot"), "w") as f:
                f.write(snap)
        del snap
        if probe is not None:
            probe(at_s, driver)

    try:
        driver.execute_cdp_cmd("Performance.enable", {})
        driver.get(handle.url)
        _wait(driver, "var g = document.getElementById('graph').querySelector('.js-plotly-plot');"
                      "return g && g.data && g.data.length && window.heliosLW && heliosLW.data && heliosPush.meta")
        driver.execute_script("heliosPush.logColumns = false; heliosPush.bytes = [];"
                              "window.heliosTimings.update = []; window.heliosTimings.append = [];")
        started = time.monotonic()
        paused = 0.0  # time spent in heap readings and probes, not pushing
        second = 120
        pushes = 0
        single: dict[str, Any] = {}
        while second < 120 + market_s:
            # one column per push (as live) first; then several, to bring an hour within the time budget
            k = 1 if pushes < SINGLE_PUSHES else per_push
            for _ in range(k):
                market.step(second)
                second += 1
            pushes += 1
            conn = next(iter(handle.hub._conns), None)
            end = time.monotonic() + 30
            # the columns are complete (sample_us) as soon as added: wait until the server has sent them (all but
            # a display column still filling, after a redraw merged several columns into one) ...
            while conn is None or conn.meta is None or conn.meta.get("seq", -1) < hist.seq - (
                    conn.meta.get("disp_us", hist.column_us) // hist.column_us):
                if time.monotonic() > end:
                    raise RuntimeError(f"push {pushes}: the server did not send column {hist.seq - 1}")
                time.sleep(0.002)
                conn = next(iter(handle.hub._conns), None)
            # ... and keep the page at most two updates behind (it applies them in order)
            _wait(driver, "return heliosPush.pending.length <= 2")
            if pushes == SINGLE_PUSHES:
                _wait(driver, "return heliosPush.pending.length === 0")
                time.sleep(0.1)
                single = driver.execute_script("return {bytes: heliosPush.bytes, update: window.heliosTimings.update}")
            pushed = second - 120
            # at the warm-up, then every 10 minutes of market (the trend, not just two ends), then at the end
            due = warm_s if not heap else (heap[-1][0] // every_s + 1) * every_s
            if pushed >= due and pushed < market_s:
                t = time.monotonic()
                read_heap(pushed)
                paused += time.monotonic() - t
        elapsed = time.monotonic() - started - paused
        read_heap(second - 120)
        got = driver.execute_script("return {redraws: heliosPush.redraws, applied: heliosPush.applied}")
    finally:
        snapshots.close()
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        handle.stop()
    upd = single["update"]
    mb = [v for _, v in heap]
    # the page's data: the heap without V8's code and without what the driver holds (CodeFigures)
    data = [(at, v - c.code_mb - c.harness_mb) for (at, v), c in zip(heap, code, strict=True)]
    slope, flat = flat_verdict(data, market_s)
    return {
        "page_market_s": market_s,
        "page_columns_per_push": per_push,
        "page_pushes": got["applied"],
        "page_market_s_per_wall_s": round(market_s / elapsed, 1),
        "page_push_bytes_median": int(statistics.median(single["bytes"])),
        "page_update_plotly_ms_median": round(statistics.median(u["plotly"] for u in upd), 2),
        "page_update_lw_ms_median": round(statistics.median(u["lw"] for u in upd), 2),
        "page_update_ms_median": round(statistics.median(u["total"] for u in upd), 2),
        "page_heap_at_market_min": " ".join(f"{s // 60}" for s, _ in heap),
        "page_heap_mb": " ".join(f"{v:.2f}" for v in mb),
        "page_heap_mb_start": round(mb[0], 2),
        "page_heap_mb_end": round(mb[-1], 2),
        "page_heap_ratio": round(mb[-1] / mb[0], 3),
        "page_heap_updates": " ".join(str(u) for u in updates),
        "page_heap_code_mb": " ".join(f"{c.code_mb:.2f}" for c in code),
        "page_heap_harness_mb": " ".join(f"{c.harness_mb:.2f}" for c in code),
        "page_heap_data_mb": " ".join(f"{v:.2f}" for _, v in data),
        "page_heap_code_mb_start": round(code[0].code_mb, 2),
        "page_heap_code_mb_end": round(code[-1].code_mb, 2),
        "page_heap_data_mb_start": round(data[0][1], 2),
        "page_heap_data_mb_end": round(data[-1][1], 2),
        "page_heap_data_ratio": round(data[-1][1] / data[0][1], 3),
        "page_heap_data_slope_mb_per_h_last_half": round(slope, 3),
        "page_heap_flat_rule": f"slope of page_heap_data_mb over the second half's readings <= {FLAT_MB_PER_H} MB/h",
        "page_heap_flat": "yes" if flat else "no",
        "page_optimised_functions": " ".join(str(c.optimised) for c in code),
        "page_js_functions": " ".join(str(c.functions) for c in code),
        "page_optimised_functions_start": code[0].optimised,
        "page_optimised_functions_end": code[-1].optimised,
        "page_js_functions_start": code[0].functions,
        "page_js_functions_end": code[-1].functions,
        "page_redraws": got["redraws"],
    }
