"""The faster engine gives the previous engine's results bit for bit.

The previous engine kept the book in dicts, read the best levels of each side from a separate structure
(``ofi.TopLevels``), computed OFI in Python (``ofi.ofi_levels``) after every message, converted the whole book to
sorted arrays at every whole-book read, showed every trade to the walls, and scanned walls with NumPy on every bin
(masks, ``np.median``, a NumPy weighted median). Those are kept here as oracles: a reference engine whose book is
that Python (``_ReferenceBook``: untracked dict sides, ``TopLevels`` fed every diff, the previous per-message work,
each message applied when it arrives) and whose walls see every trade, against which the engine (its compiled
``FlowBook``, messages applied in batches) must agree on every candle feature, every running sum, every heatmap
column and every signal, on the real Binance BTCUSDT capture and on the calibrated synthetic market; the
``FlowBook`` against the dict book and ``ofi_levels`` on Hypothesis books, batched and message by message; the wall
scan and depth imbalance against the previous arithmetic on Hypothesis books; and the weighted median alone on
Hypothesis-generated inputs. The whole day against the previous
commit's own code is ``make bench`` (``devtools/benchmarks/engine_24h.py``).
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Iterable

import _btcusdt
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helios_orderflow.book import flow_kernel as fk
from helios_orderflow.book.arrays import SideArrays, sorted_arrays
from helios_orderflow.book.flow_book import FlowBook
from helios_orderflow.book.order_book import BookSide
from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.events import BookDelta, Event, Level
from helios_orderflow.core.settings import HeliosSettings, WallSettings
from helios_orderflow.devtools.benchmarks.engine_24h import same_bits
from helios_orderflow.emulator.synth import synth_events
from helios_orderflow.engine.candles import CandleFeatures
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.features.compute import candles_to_frame, compute_features, engine_settings
from helios_orderflow.signals.heatmap import side_reach
from helios_orderflow.signals.ofi import TopLevels, depth_imbalance, ofi_levels
from helios_orderflow.signals.walls import WallTracker, _weighted_median_without


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
    """A dict side (the heap; arrays by converting every level) whose best levels come from the previous engine's
    ``ofi.TopLevels``, fed every message after the side applied it, as the previous engine did."""

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

    def arrays(self) -> SideArrays:
        return sorted_arrays(self.levels)


class _ReferenceBook:
    """The previous engine's book and per-message work, with ``FlowBook``'s interface: ``_ReferenceSide``s, each
    message applied when it arrives and followed by ``PairEngine._book_changed`` as it was (``ofi.ofi_levels``),
    the flow kept in ``FlowBook``'s ``flow``/``state``/``flow_top`` layout for the engine to read."""

    def __init__(self, n: int) -> None:
        self.n_levels = n
        self.update_id = -1
        self.message_kind = fk.APPLY_COUNT
        self.changed = False
        self.flow = np.zeros(5)
        self.state = np.zeros(10, np.int64)
        self.flow_top = np.zeros((4, n))
        self.bids = _ReferenceSide(True, n)
        self.asks = _ReferenceSide(False, n)
        self._prev: tuple[list[Level], list[Level]] = ([], [])

    def apply_diff(self, bids: tuple[Level, ...], asks: tuple[Level, ...]) -> None:
        self.bids.apply(bids)
        self.asks.apply(asks)
        if self.message_kind != fk.APPLY:
            self._book_changed(self.message_kind == fk.APPLY_COUNT)
        self.changed = True

    def mark_changed(self) -> None:
        self._book_changed(False)
        self.changed = True

    def load_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int = -1) -> None:
        self.bids.load(bids)
        self.asks.load(asks)
        self.update_id = update_id

    def flush(self) -> bool:
        return False

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (*self.bids.arrays(), *self.asks.arrays())

    def _book_changed(self, count_ofi: bool) -> None:
        n, flow, state = self.n_levels, self.flow, self.state
        bids = self.bids.best_levels(n)
        asks = self.asks.best_levels(n)
        if not bids or not asks:
            state[fk.BOOK_OK] = state[fk.OFI_BASE] = 0
            return
        if bids[0][0] >= asks[0][0]:
            state[fk.CROSSED] += 1
            state[fk.BOOK_OK] = state[fk.OFI_BASE] = 0
            return
        state[fk.BOOK_OK] = state[fk.HAD_BOOK] = 1
        if count_ofi and state[fk.OFI_BASE]:
            e1, em = ofi_levels(*self._prev, bids, asks, n)
            flow[fk.OFI_LAST] = e1
            for i, e in ((fk.OFI_TOTAL, e1), (fk.OFI_MULTI_TOTAL, em), (fk.CANDLE_OFI, e1),
                         (fk.CANDLE_OFI_MULTI, em)):
                flow[i] = float(flow[i]) + e  # Python's float addition, as the previous engine
        self._prev = (bids, asks)
        self.flow_top[:2, :len(bids)] = np.array(bids).T
        self.flow_top[2:, :len(asks)] = np.array(asks).T
        state[fk.NTOP_B], state[fk.NTOP_A] = len(bids), len(asks)
        state[fk.OFI_BASE] = 1


class _AllTradesWalls(WallTracker):
    """Walls shown every trade, as the previous engine did (``on_trade`` leaves alone the trades that reach no
    tracked bin; the engine now skips the call for them)."""

    def _reach(self) -> None:
        self.ask_reach, self.bid_reach = -math.inf, math.inf


class _ReferenceEngine(PairEngine):
    def _init_market(self, mid: float) -> None:
        super()._init_market(mid)
        assert self.walls is not None
        self.walls.__class__ = _AllTradesWalls
        self.walls._reach()


def _reference(engine: PairEngine) -> PairEngine:
    """``engine`` made to run the previous engine's way (see the module docstring); before its first event."""
    engine.__class__ = _ReferenceEngine
    engine.book = _ReferenceBook(engine.settings.flow.ofi_levels)  # type: ignore[assignment]
    engine.sync = BookSync(book=engine.book)  # type: ignore[arg-type]
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
    # The running sums themselves (a feature can round a last-bit difference away: VWAP bands add sigma to ~6e4).
    def sums(e: PairEngine) -> object:
        x, c = e.exhaustion, e.candle
        return _bits((e.vwap.ref, e.vwap.sum_q, e.vwap.sum_dq, e.vwap.sum_d2q, e.cvd.total, e.cvd.session,
                      e.cvd.buy_volume, e.cvd.sell_volume, x.b_hi, x.b_lo, x.b_cvd_hi, x.b_cvd_lo, x.b_buy, x.b_sell,
                      *(getattr(c, name) for name in c.__slots__), e.last_price, e.events))
    assert sums(fast) == sums(ref)
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


def test_real_stream_flow_book_equals_the_dict_book_after_every_diff(real_events: list[Event]) -> None:
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL)
    plain = BookSync()  # the dict book, fed the same events
    n = engine.settings.flow.ofi_levels
    compared = 0
    for i, ev in enumerate(real_events):
        engine.on_event(ev)
        if type(ev) is BookDelta:
            plain.on_delta(ev)
        elif hasattr(ev, "bids"):
            plain.on_snapshot(ev)  # type: ignore[arg-type]
        if not plain.in_sync or i % 3:  # reads every few events: the diffs between are applied in one batch
            continue
        book = engine.book
        assert book.bids.top(n) == plain.book.bids.top(n) and book.asks.top(n) == plain.book.asks.top(n)
        if i % 41 == 0:
            bp, bq, ap, aq = book.arrays()
            assert _same_arrays((bp, bq), _oracle_arrays(plain.book.bids.levels))
            assert _same_arrays((ap, aq), _oracle_arrays(plain.book.asks.levels))
            compared += 1
    assert compared > 500


_PRICES = st.integers(0, 3000).map(lambda i: 1000.0 + i * 0.01)
_SIZES = st.one_of(st.just(0.0), st.just(-0.0), st.floats(0.001, 50.0), st.just(math.nan))
# One message of a two-sided book around 1015.00: (bid changes, ask changes, what it is); the sides overlap, so
# crossed and one-sided books occur.
_NEAR_TOUCH = st.one_of(_PRICES, st.integers(1496, 1505).map(lambda i: 1000.0 + i * 0.01))
_FLOW_MESSAGES = st.lists(
    st.tuples(st.lists(st.tuples(_NEAR_TOUCH, _SIZES), max_size=40).map(tuple),
              st.lists(st.tuples(_NEAR_TOUCH, _SIZES), max_size=40).map(tuple),
              st.sampled_from([fk.APPLY_COUNT] * 6 + [fk.APPLY, fk.CHECK])),
    min_size=1, max_size=40)


@settings(max_examples=80)
@given(base=st.integers(0, 700), n=st.integers(1, 8), messages=_FLOW_MESSAGES,
       reads=st.lists(st.booleans(), min_size=40, max_size=40))
@example(base=3, n=2, messages=[(((1000.0 + 1501 * 0.01, 1.0),), (), fk.APPLY_COUNT)],  # a bid at the best ask:
         reads=[True] * 40)  # crossed (the check is >=)
def test_flow_book_equals_the_dict_book_and_ofi_levels_whether_read_after_each_message_or_in_batches(
        base: int, n: int, messages: list[tuple[tuple[Level, ...], tuple[Level, ...], int]],
        reads: list[bool]) -> None:
    flow, ref = FlowBook(n), _ReferenceBook(n)
    # The prices of ``_PRICES`` (the same floats): a bid and an ask at one price are equal, and the book crossed.
    bids = [(1000.0 + (1500 - i) * 0.01, 1.0 + i % 7) for i in range(base)]
    asks = [(1000.0 + (1501 + i) * 0.01, 2.0 + i % 5) for i in range(base)]
    for book in (flow, ref):
        book.load_snapshot(bids, asks, 7)
        book.mark_changed()

    def same() -> None:
        flow.flush()
        assert _same_arrays(flow.arrays()[:2], ref.bids.arrays()) and _same_arrays(flow.arrays()[2:], ref.asks.arrays())
        assert flow.flow.tobytes() == ref.flow.tobytes()
        keys = (fk.BOOK_OK, fk.OFI_BASE, fk.CROSSED, fk.HAD_BOOK, fk.NTOP_B, fk.NTOP_A)
        assert flow.state[list(keys)].tolist() == ref.state[list(keys)].tolist()
        nb, na = int(ref.state[fk.NTOP_B]), int(ref.state[fk.NTOP_A])
        if ref.state[fk.OFI_BASE]:
            assert flow.flow_top[:2, :nb].tobytes() == ref.flow_top[:2, :nb].tobytes()
            assert flow.flow_top[2:, :na].tobytes() == ref.flow_top[2:, :na].tobytes()

    for (b, a, what), read in zip(messages, reads, strict=False):
        for book in (flow, ref):
            if what == fk.CHECK:
                book.mark_changed()
            else:
                book.message_kind = what
                book.apply_diff(b, a)
                book.message_kind = fk.APPLY_COUNT
        if read:
            same()
    same()
    assert flow.state[fk.CROSSED] == ref.state[fk.CROSSED]


def _previous_weighted_median_without(sorted_sizes: np.ndarray, cum: np.ndarray, size: float) -> float:
    """The previous ``walls._weighted_median_without``, on NumPy arrays."""
    if sorted_sizes.size < 2:
        return 0.0
    j = int(np.searchsorted(sorted_sizes, size, side="right")) - 1
    half = (cum[-1] - size) / 2.0
    k = int(np.searchsorted(cum[:j], half))
    if k < j:
        return float(sorted_sizes[k])
    k = int(np.searchsorted(cum[j + 1:] - size, half))
    return float(sorted_sizes[min(j + 1 + k, sorted_sizes.size - 1)])


def _previous_scan(w: WallSettings, bin_size: float, max_range: float, mid: float, bp: np.ndarray, bq: np.ndarray,
                   ap: np.ndarray, aq: np.ndarray) -> tuple[float, int, dict[tuple[str, int], tuple[float, float]]]:
    """The previous scan's arithmetic: (median, bins in range, {(side, bin): (size, heaviest level's price)} of the
    candidates), with masks over the whole arrays, ``bincount`` from each side's lowest bin, ``np.median``."""
    r = w.range_pct / 100.0
    cap = max(max_range, r)
    reach_b, reach_a = side_reach(mid, bp, ap, w.min_levels)
    lo_px = mid * (1.0 - min(max(r, reach_b), cap))
    hi_px = mid * (1.0 + min(max(r, reach_a), cap))
    sides = []
    for side, p, q in (("bid", bp[bp >= lo_px], bq[bp >= lo_px]), ("ask", ap[ap <= hi_px], aq[ap <= hi_px])):
        idx = np.floor(p / bin_size + 1e-9).astype(np.int64)
        if idx.size:
            sums = np.bincount(idx - idx.min(), weights=q)
            nz = np.nonzero(sums)[0]
            bins, sizes = nz + idx.min(), sums[nz]
        else:
            bins, sizes = idx, np.zeros(0)
        sides.append((side, p, q, idx, bins, sizes))
    n = sum(x[5].size for x in sides)
    found: dict[tuple[str, int], tuple[float, float]] = {}
    if n < w.min_bins:
        return math.nan, n, found
    median = float(np.median(np.concatenate([x[5] for x in sides])))
    for side, p, q, idx, bins, sizes in sides:
        m = sizes >= w.size_k * median
        if not m.any():
            continue
        ordered = np.sort(sizes)
        cum = np.cumsum(ordered)
        for b, size in zip(bins[m].tolist(), sizes[m].tolist(), strict=True):
            if w.liquidity_k > 0 and size < w.liquidity_k * _previous_weighted_median_without(ordered, cum, size):
                continue
            inside = idx == b
            found[(side, b)] = (size, float(p[inside][int(np.argmax(q[inside]))]))
    return median, n, found


@settings(max_examples=300)
@given(sizes=st.lists(st.one_of(st.sampled_from([1.0, 2.0, 3.0, 10.0]), st.floats(0.001, 1000.0)), min_size=1,
                      max_size=60), pick=st.integers(0, 59))
def test_weighted_median_without_a_bin_equals_the_previous_numpy_search_bit_for_bit(sizes: list[float],
                                                                                    pick: int) -> None:
    ordered = sorted(sizes)
    cum = np.cumsum(ordered)
    size = ordered[pick % len(ordered)]
    want = _previous_weighted_median_without(np.array(ordered), cum, size)
    assert _bits(_weighted_median_without(ordered, cum.tolist(), size)) == _bits(want)


# Sizes with ties (equal bins exercise the weighted median's positions), dust and an occasional NaN.
_BOOK_SIZES = st.one_of(st.sampled_from([0.5, 1.0, 1.0, 2.0, 7.5]), st.floats(0.001, 80.0), st.just(math.nan))


@settings(max_examples=300)
@given(bids=st.dictionaries(st.integers(1, 400), _BOOK_SIZES, max_size=120),
       asks=st.dictionaries(st.integers(1, 400), _BOOK_SIZES, max_size=120),
       spread=st.integers(1, 30), nan_ok=st.booleans(), liquidity_k=st.sampled_from([0.0, 1.5]),
       min_levels=st.sampled_from([1, 10, 60]))
def test_wall_scan_and_depth_imbalance_equal_the_previous_numpy_arithmetic_bit_for_bit(
        bids: dict[int, float], asks: dict[int, float], spread: int, nan_ok: bool, liquidity_k: float,
        min_levels: int) -> None:
    # Prices 0.01 apart below and above a mid of about 1000; bins of 0.05 (5 ticks); walls within 0.3 %, widened up
    # to 1 % for a side whose ``min_levels`` best levels reach farther.
    best_bid = 1000.0 - spread * 0.01
    book = {"bid": {round(best_bid - (i - 1) * 0.01, 2): q for i, q in bids.items()},
            "ask": {round(best_bid + spread * 0.01 + (i - 1) * 0.01, 2): q for i, q in asks.items()}}
    if not nan_ok:
        book = {side: {p: q for p, q in levels.items() if not math.isnan(q)} for side, levels in book.items()}
    bp, bq = sorted_arrays(book["bid"])
    ap, aq = sorted_arrays(book["ask"])
    if not bp.size or not ap.size:
        return
    mid = (float(bp[-1]) + float(ap[0])) / 2.0
    s = HeliosSettings()
    w = dataclasses.replace(s.walls, range_pct=0.3, min_levels=min_levels, liquidity_k=liquidity_k, min_age_s=0.0)
    tracker = WallTracker(w, s.absorption, 0.05, 0.01)
    tracker.scan(1, mid, bp, bq, ap, aq)
    median, n, found = _previous_scan(w, 0.05, 0.01, mid, bp, bq, ap, aq)
    assert _bits(tracker.median) == _bits(median)
    assert tracker.bins_in_range == n
    got = {key: (t.size, t.level_price) for key, t in tracker.tracks.items()}
    assert _bits(tuple(sorted(got.items()))) == _bits(tuple(sorted(found.items())))
    want_di = depth_imbalance_previous(bp, bq, ap, aq, mid, 10.0)
    assert _bits(depth_imbalance(bp, bq, ap, aq, mid, 10.0)) == _bits(want_di)


def depth_imbalance_previous(bp: np.ndarray, bq: np.ndarray, ap: np.ndarray, aq: np.ndarray, mid: float,
                             bps: float) -> float:
    """The previous ``ofi.depth_imbalance``: masked copies summed."""
    b = float(bq[bp >= mid * (1.0 - bps * 1e-4)].sum())
    a = float(aq[ap <= mid * (1.0 + bps * 1e-4)].sum())
    return (b - a) / (b + a) if b + a > 0 else math.nan
