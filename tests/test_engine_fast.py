"""The faster engine gives the previous engine's results bit for bit.

The previous engine read the best levels of each side from a separate structure (``ofi.TopLevels``) and converted
the whole book to sorted arrays at every whole-book read. Those are kept here as oracles: a reference engine with
untracked book sides (the heap, ``TopLevels`` fed every diff, arrays by converting every level), against which
the engine must agree on every candle feature, every heatmap column and every signal, on the real Binance
BTCUSDT capture and on the calibrated synthetic market; and the pieces alone (tracked sides, the arrays' merge)
on Hypothesis-generated books.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Iterable

import _btcusdt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helios_orderflow.book.arrays import merge_changes, sorted_arrays, worth_merging
from helios_orderflow.book.order_book import BookSide
from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.events import Event
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.devtools.benchmarks.engine_24h import same_bits
from helios_orderflow.emulator.synth import synth_events
from helios_orderflow.engine.candles import CandleFeatures
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.features.compute import candles_to_frame, compute_features, engine_settings
from helios_orderflow.signals.ofi import TopLevels


def _bits(x: object) -> object:
    """A value compared by its bits (floats: NaN payloads and the sign of zero count)."""
    if isinstance(x, float):
        return struct.pack("<d", x)
    if isinstance(x, tuple):
        return tuple(_bits(v) for v in x)
    return x


def _oracle_arrays(levels: dict[float, float]) -> tuple[np.ndarray, np.ndarray]:
    prices = sorted(levels)
    return np.array(prices, dtype=np.float64), np.array([levels[p] for p in prices], dtype=np.float64)


def _same_arrays(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> bool:
    return all(g.dtype == w.dtype and g.tobytes() == w.tobytes() for g, w in zip(got, want, strict=True))


class _ReferenceSide(BookSide):
    """An untracked side (the heap; arrays by converting every level) whose best levels come from the previous
    engine's ``ofi.TopLevels``, fed every message after the side applied it, as the previous engine did."""

    def __init__(self, is_bid: bool, need: int) -> None:
        super().__init__(is_bid)
        self.top_levels = TopLevels(self, need)

    def load(self, levels: Iterable[tuple[float, float]]) -> None:
        super().load(levels)
        self.top_levels.rebuild()

    def apply(self, changes: Iterable[tuple[float, float]]) -> None:
        changes = tuple(changes)
        super().apply(changes)
        self.top_levels.apply(changes)

    def best_levels(self, n: int) -> list[tuple[float, float]]:
        return self.top_levels.top(n)


def _reference(engine: PairEngine) -> PairEngine:
    """``engine`` made to run the previous engine's way (see the module docstring); before its first event."""
    engine.sync = BookSync()
    need = engine.settings.flow.ofi_levels
    engine.sync.book.bids = _ReferenceSide(True, need)
    engine.sync.book.asks = _ReferenceSide(False, need)
    engine.book = engine.sync.book
    return engine


def _engines(events: list[Event], settings: HeliosSettings, defer: bool = False
             ) -> tuple[tuple[PairEngine, list[CandleFeatures]], tuple[PairEngine, list[CandleFeatures]]]:
    ex, sym = events[0].exchange, events[0].symbol
    fast_rows: list[CandleFeatures] = []
    ref_rows: list[CandleFeatures] = []
    fast = PairEngine(ex, sym, settings, on_candle=fast_rows.append, defer_timers=defer)
    for i, ev in enumerate(events):
        fast.on_event(ev)
        if defer and i % 7 == 0:
            fast.settle()  # as the live feed does after each socket read
    fast_rows.append(fast.partial_candle())  # type: ignore[arg-type]
    ref = _reference(PairEngine(ex, sym, settings, on_candle=ref_rows.append))
    for ev in events:
        ref.on_event(ev)
    ref_rows.append(ref.partial_candle())  # type: ignore[arg-type]
    return (fast, fast_rows), (ref, ref_rows)


def _assert_same_engines(fast: PairEngine, fast_rows: list[CandleFeatures], ref: PairEngine,
                         ref_rows: list[CandleFeatures]) -> None:
    assert len(fast_rows) == len(ref_rows) > 10
    for a, b in zip(fast_rows, ref_rows, strict=True):
        assert _bits(dataclasses.astuple(a)) == _bits(dataclasses.astuple(b)), a.open_time_us
    assert _bits((fast.ofi_total, fast.ofi_multi_total, fast.depth_imbalance, fast.cvd.total)) == _bits(
        (ref.ofi_total, ref.ofi_multi_total, ref.depth_imbalance, ref.cvd.total))
    assert (fast.absorptions, fast.exhaustions, fast.crossed) == (ref.absorptions, ref.exhaustions, ref.crossed)
    assert fast.walls is not None and ref.walls is not None
    assert fast.walls.ended_count == ref.walls.ended_count and fast.walls.ended_count > 0
    assert fast.walls.recently_ended() == ref.walls.recently_ended()
    assert fast.walls.active() == ref.walls.active()
    if ref.heatmap is not None:
        assert fast.heatmap is not None
        wa, wb = fast.heatmap.window(), ref.heatmap.window()
        assert wa is not None and wb is not None and wa.seq == wb.seq
        for name in ("ts_us", "anchor_bin", "bids", "asks", "buy", "sell", "scalars"):
            assert getattr(wa, name).tobytes() == getattr(wb, name).tobytes(), name


@pytest.fixture(scope="module")
def real_events() -> list[Event]:
    return list(_btcusdt.events())


@pytest.fixture(scope="module")
def synthetic_events() -> list[Event]:
    # The calibrated market (helios synth --symbols BTC/USDT --seed 1), 20 minutes.
    return list(synth_events(["BTC/USDT"], 1, 1_704_067_200_000_000, 20 * 60_000_000))


@pytest.mark.parametrize("defer", [False, True], ids=["inline", "deferred"])
def test_real_stream_candles_heatmap_and_walls_equal_the_reference_engines_bit_for_bit(
        real_events: list[Event], defer: bool) -> None:
    (fast, fast_rows), (ref, ref_rows) = _engines(real_events, HeliosSettings(), defer)
    _assert_same_engines(fast, fast_rows, ref, ref_rows)


def test_synthetic_market_candles_heatmap_and_walls_equal_the_reference_engines_bit_for_bit(
        synthetic_events: list[Event]) -> None:
    (fast, fast_rows), (ref, ref_rows) = _engines(synthetic_events, HeliosSettings())
    _assert_same_engines(fast, fast_rows, ref, ref_rows)


@pytest.mark.parametrize("stream", ["real", "synthetic"])
def test_compute_features_equals_the_reference_engines_frame_bit_for_bit(
        stream: str, real_events: list[Event], synthetic_events: list[Event]) -> None:
    events = real_events if stream == "real" else synthetic_events
    frame = compute_features(events, events[0].symbol, "1m")
    rows: list[CandleFeatures] = []
    ref = _reference(PairEngine(events[0].exchange, events[0].symbol, engine_settings(None), "1m",
                                on_candle=rows.append))
    for ev in events:
        ref.on_event(ev)
    rows.append(ref.partial_candle())  # type: ignore[arg-type]
    want = candles_to_frame(rows)
    assert list(frame.columns) == list(want.columns) and len(frame) == len(want) > 10
    assert same_bits(want, frame) == []


def test_real_stream_best_levels_and_arrays_equal_the_sorted_book_after_every_diff(real_events: list[Event]) -> None:
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL)
    n = engine.settings.flow.ofi_levels
    merged = 0
    for i, ev in enumerate(real_events):
        engine.on_event(ev)
        if not engine.sync.in_sync:
            continue
        for side in (engine.book.bids, engine.book.asks):
            assert side.best_levels(n) == side.top(n)
            if i % 11 == 0:  # reads at varying distances: merges of few and of many changes
                merged += worth_merging(side._logged, len(side)) and side._arrays is not None
                assert _same_arrays(side.arrays(), _oracle_arrays(side.levels))
    assert merged > 100


_PRICES = st.integers(0, 3000).map(lambda i: 1000.0 + i * 0.01)
_SIZES = st.one_of(st.just(0.0), st.just(-0.0), st.floats(0.001, 50.0), st.just(math.nan))
_MESSAGES = st.lists(st.lists(st.tuples(_PRICES, _SIZES), max_size=40).map(tuple), min_size=1, max_size=30)


@settings(max_examples=60)
@given(base=st.integers(0, 2500), is_bid=st.booleans(), need=st.integers(1, 8), messages=_MESSAGES,
       reads=st.lists(st.booleans(), min_size=30, max_size=30))
def test_tracked_side_keeps_best_levels_and_arrays_equal_to_the_sorted_side(
        base: int, is_bid: bool, need: int, messages: list[tuple[tuple[float, float], ...]],
        reads: list[bool]) -> None:
    side = BookSide(is_bid)
    side.track(need, capacity=8)
    # ``base`` levels every 0.01 from 1000.0: up to 2,500, deep enough for the merge to be chosen.
    side.load([(1000.0 + i * 0.01, 1.0 + i % 7) for i in range(base)])
    model = dict(side.levels)
    side.arrays()
    for message, read in zip(messages, reads, strict=False):
        side.apply(message)
        for p, q in message:
            if q:
                model[p] = q
            else:
                model.pop(p, None)
        assert side.levels == model  # (a NaN size is the same object in both: equal)
        want_top = sorted(model.items(), key=lambda kv: -kv[0] if is_bid else kv[0])[:need]
        assert _bits(tuple(side.best_levels(need))) == _bits(tuple(want_top))
        assert side.best_price() == (want_top[0][0] if want_top else None)
        if read:
            assert _same_arrays(side.arrays(), _oracle_arrays(model))
    assert _same_arrays(side.arrays(), _oracle_arrays(model))


@settings(max_examples=100)
@given(before=st.dictionaries(_PRICES, st.floats(0.001, 50.0), max_size=300),
       changes=st.lists(st.tuples(_PRICES, _SIZES), max_size=200))
def test_merging_the_changed_prices_gives_the_arrays_of_the_changed_side(
        before: dict[float, float], changes: list[tuple[float, float]]) -> None:
    after = dict(before)
    for p, q in changes:
        if q:
            after[p] = q
        else:
            after.pop(p, None)
    prices, sizes = sorted_arrays(before)
    assert _same_arrays((prices, sizes), _oracle_arrays(before))
    got = merge_changes(prices, sizes, dict(changes))
    assert _same_arrays(got, _oracle_arrays(after))
    assert _same_arrays((prices, sizes), _oracle_arrays(before))  # the given arrays are not written


def test_a_tracked_side_nobody_reads_keeps_no_growing_log() -> None:
    side = BookSide(False)
    side.track(5)
    side.load([(100.0 + i, 1.0) for i in range(50)])
    side.arrays()
    for k in range(20_000):
        side.apply(((100.0 + k % 50, 1.0 + k % 3),))
    assert side._logged <= len(side) + 4096
    assert _same_arrays(side.arrays(), _oracle_arrays(side.levels))
