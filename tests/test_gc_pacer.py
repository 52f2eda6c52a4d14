"""The feed's paced garbage collections (helios_orderflow/live/gc_pacer.py), with CPython's real collector and
Freqtrade's own thresholds (``freqtrade.system.gc_set_threshold``), and the real feed on the local exchange."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from freqtrade.system import gc_set_threshold

from helios_orderflow.core.errors import ConfigError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.emulator import SyntheticSource, start_in_thread
from helios_orderflow.live.feed import Feed
from helios_orderflow.live.gc_pacer import GcPacer
from tests.waits import wait_for


class Node:
    """A cyclic object the collector alone can free (a weakref says when it is gone)."""

    def __init__(self) -> None:
        self.me = self


def _cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


@pytest.fixture
def freqtrade_thresholds() -> Iterator[None]:
    """The collector as Freqtrade leaves it in a bot (its ``gc_set_threshold``), restored afterwards."""
    before = gc.get_threshold()
    gc_set_threshold()
    assert gc.get_threshold() == (50_000, 500, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def test_every_full_every_th_tick_collects_the_whole_heap_the_others_the_young_and_middle_generations():
    asked: list[int] = []
    clock = iter(float(i) * 0.5 for i in range(100))
    pacer = GcPacer(4, collect=lambda g: asked.append(g) or 3, timer=lambda: next(clock))
    for _ in range(8):
        pacer.tick()
    assert asked == [1, 1, 1, 2, 1, 1, 1, 2]
    assert (pacer.ticks, pacer.full_collections, pacer.freed) == (8, 2, 24)
    assert pacer.last_pause_s == pacer.max_pause_s == 0.5
    with pytest.raises(ValueError, match="full_every must be >= 1"):
        GcPacer(0)


def test_under_freqtrades_thresholds_an_old_cycle_outlives_many_young_collections_and_the_full_tick_frees_it(
        freqtrade_thresholds: None):
    held = Node()
    old = weakref.ref(held)
    gc.collect(1)  # survivors of a middle collection go to the oldest generation, as a bot's long-lived garbage
    del held  # now garbage in the oldest generation, reachable only from itself
    young = _cycle()
    # Allocate four young collections' worth of containers: Freqtrade's thresholds collect the young generation
    # but not the oldest one (500 young collections before a middle one, 1,000 middle ones before a full one).
    young_before = gc.get_stats()[0]["collections"]
    keep = [[i] for i in range(210_000)]
    assert gc.get_stats()[0]["collections"] >= young_before + 4
    assert young() is None  # a young cycle goes with the young generation
    assert old() is not None  # the old one stays: in a bot, for the life of the process
    del keep
    pacer = GcPacer(2)
    pacer.tick()  # young and middle generations only
    assert old() is not None
    pacer.tick()  # the full one
    assert old() is None
    assert pacer.full_collections == 1 and pacer.freed >= 1 and pacer.max_pause_s > 0


def test_feed_settings_refuse_a_negative_period_and_a_full_every_below_one():
    with pytest.raises(ConfigError, match="gc_every_s must be >= 0"):
        HeliosSettings.from_dict({"feed": {"gc_every_s": -1}})
    with pytest.raises(ConfigError, match="gc_full_every must be >= 1"):
        HeliosSettings.from_dict({"feed": {"gc_full_every": 0}})
    assert HeliosSettings().feed.gc_every_s == 60.0 and HeliosSettings().feed.gc_full_every == 10


@pytest.mark.integration
def test_the_live_feed_collects_at_its_pace_full_collections_included_and_says_its_longest_pause():
    exchange = start_in_thread(SyntheticSource(["BTC/USDT"], seed=3))
    settings = HeliosSettings.from_dict({"feed": {"gc_every_s": 0.05, "gc_full_every": 2}})
    feed = Feed("binance", ["BTC/USDT"], settings, ccxt_config=exchange.ccxt_config(), engine=False)
    off_settings = HeliosSettings.from_dict({"feed": {"gc_every_s": 0}})
    off = Feed("binance", ["BTC/USDT"], off_settings, ccxt_config=exchange.ccxt_config(), engine=False)
    try:
        feed.start()
        off.start()
        wait_for(lambda: feed.stats.gc_full_collections >= 3, 120, "three full collections by the feed")
        assert feed.stats.gc_collections >= 6  # every other one is a full one
        assert feed.stats.gc_max_pause_us > 0
        wait_for(lambda: off.stats.book_deltas >= feed.stats.book_deltas // 2 > 0, 120, "the second feed's diffs")
        assert off.stats.gc_collections == 0  # 0 leaves the collector to its thresholds
    finally:
        feed.stop()
        off.stop()
        exchange.stop()
