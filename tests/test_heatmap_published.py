"""The heatmap the page shows is the engine's own, as the feed published it: read by sequence number from the
engine's ring (``HeatmapColumns.since``), from another thread, while the engine writes, with nothing torn,
nothing lost and nothing twice; and the live page (``SharedStateSource``) keeps no heatmap of its own."""

from __future__ import annotations

import math
import threading

import numpy as np

from dashboard.settings import DashboardSettings
from dashboard.sources import SharedStateSource
from helios_orderflow.core.settings import HeatmapSettings, HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.live.health import PairHealth
from helios_orderflow.live.state import PairSnapshot, SharedState
from helios_orderflow.signals.heatmap import Heatmap
from tests import _btcusdt

H = 5


def _column_for(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A book whose every bin holds ``k``: a torn column (half of one write, half of another) shows two values."""
    prices = np.arange(1000 - H, 1001, dtype=np.float64)
    sizes = np.full(prices.size, float(k))
    return prices, sizes, prices + H, sizes.copy()


def test_a_reader_on_another_thread_gets_every_column_once_and_never_a_torn_one() -> None:
    hm = Heatmap(HeatmapSettings(window_s=4.0, snapshot_interval_ms=500), 1.0, H)  # a ring of 8 columns
    total = 20_000
    done = threading.Event()

    def write() -> None:
        for k in range(1, total + 1):
            hm.sample(k * 500_000, 1000.5, _column_for(k), None, (999.0, 1001.0, float(k), -float(k)))
        done.set()

    got: list[int] = []
    torn = lost = 0
    last = 0
    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set() or last < hm.seq:
        seq = hm.seq
        if seq == last:
            continue
        cols = hm.read(last, seq)
        if cols is None:
            lost += seq - last
            last = seq
            continue
        lost += cols.first_seq - last - 1
        for i in range(len(cols)):
            k = cols.first_seq + i
            vals = np.unique(np.concatenate([cols.bids[i], cols.asks[i]]))
            torn += int(vals.tolist() != [float(k)] or cols.ts_us[i] != k * 500_000 or cols.scalars[i][2] != k)
            got.append(k)
        last = cols.seq
    writer.join()
    assert torn == 0
    # every column the reader did not lose to the ring's size arrived exactly once, in order
    assert got == sorted(set(got)) and len(got) + lost == total
    assert got[-1] == total


def test_a_slow_reader_resumes_from_its_last_column_until_the_ring_has_moved_on() -> None:
    hm = Heatmap(HeatmapSettings(window_s=4.0, snapshot_interval_ms=500), 1.0, H)
    for k in range(1, 6):
        hm.sample(k * 500_000, 1000.5, _column_for(k), None)
    published = hm.columns(2)  # what one snapshot carries: the newest 2
    assert published is not None and len(published) == 2 and published.seq == 5
    everything = published.since(0)  # ... yet the reader gets every column up to that snapshot
    assert everything is not None and everything.first_seq == 1 and everything.ts_us.tolist() == [
        k * 500_000 for k in range(1, 6)]
    for k in range(6, 12):  # the engine goes on: the snapshot still ends at column 5
        hm.sample(k * 500_000, 1000.5, _column_for(k), None)
    later = published.since(3)
    # ring of 8, 11 written: columns 1..3 are overwritten, and column 4's slot is the next one the writer
    # takes, so a reader (who cannot know whether that write has begun) is told its data starts at 5
    assert later is not None and later.seq == 5 and later.first_seq == 5 and len(later) == 1
    gone = published.since(0)
    assert gone is not None and gone.first_seq == 5
    assert published.since(5) is None
    first, ts = published.times_since(0)
    assert first == 5 and ts.tolist() == [5 * 500_000]


def test_the_live_page_reads_the_engines_columns_and_loses_none_however_slowly_it_polls() -> None:
    settings = HeliosSettings()
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, settings, defer_timers=True)
    state = SharedState(_btcusdt.EXCHANGE, [_btcusdt.SYMBOL])
    source = SharedStateSource(state, settings=settings, dashboard=DashboardSettings(), bot_trades=None)
    key = f"{_btcusdt.EXCHANGE} {_btcusdt.SYMBOL}"
    polls = 0
    published_seq = 0
    for ev in _btcusdt.events():
        engine.on_event(ev)
        hm = engine.heatmap
        if hm is None or hm.seq - published_seq < 50:
            continue
        # the feed publishes; the page polls only every 50 columns (25 s of market): the old 4-column
        # snapshots lost 46 of every 50
        engine.settle()
        published_seq = hm.seq
        state.publish(PairSnapshot(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, PairHealth(_btcusdt.EXCHANGE, _btcusdt.SYMBOL),
                                   engine=engine.snapshot(), seq=polls + 1))
        source.poll_once()
        polls += 1
    hist = source.history(key)
    assert hist is not None and polls > 20
    assert source.missed_columns == 0
    assert hist.columns.nbytes == 0  # no copy of its own: the engine's ring
    window = engine.heatmap.window() if engine.heatmap is not None else None
    assert window is not None
    sl = hist.slice()
    assert hist.seq == published_seq and sl.seq == published_seq
    # every column of the engine's window up to the last publication, with the engine's own values (the ring's
    # oldest column may be the one a writer would overwrite next: a reader on another thread never takes it)
    n = len(sl)
    assert engine.heatmap is not None and n == min(published_seq, engine.heatmap.capacity - 1)
    w = window.since(published_seq - n)
    assert w is not None and np.array_equal(sl.ts_us, w.ts_us)
    assert np.array_equal(np.diff(sl.ts_us), np.full(n - 1, settings.heatmap.snapshot_interval_ms * 1000))
    h = hist.half_bins
    assert np.allclose(sl.liquidity[:, :h], w.bids[:, :h], equal_nan=True)
    assert np.allclose(sl.liquidity[:, h + 1:], w.asks[:, 1:], equal_nan=True)
    assert np.array_equal(sl.best_bid, w.scalars[:, 0], equal_nan=True)
    # the scalars are the engine's at each column, not the poll's: CVD moves within a poll's 50 columns
    assert len(set(sl.cvd[-50:].tolist())) > 1 and math.isfinite(sl.best_ask[-1])
    # a page resuming from any column it holds gets the rest exactly once
    tail = hist.slice(after_seq=published_seq - 7)
    assert len(tail) == 7 and np.array_equal(tail.ts_us, sl.ts_us[-7:])
    start, end = hist.span() or (0, 0)
    assert start == sl.ts_us[0] and end == sl.ts_us[-1] + hist.column_us
    part = hist.slice(int(sl.ts_us[10]), int(sl.ts_us[20]))
    assert np.array_equal(part.ts_us, sl.ts_us[10:20])
