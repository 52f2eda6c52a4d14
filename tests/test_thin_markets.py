"""Thin markets: tick, bin, heatmap range and walls on the real thin Gate.io and KuCoin books
(``../shared/data/cryptofeed``, read by ``_thin_books``), against the venues' own ticks.

The figures asserted here are the table of docs/signals.md, "Thin markets".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

import _thin_books as tb
import numpy as np
import pytest
from _scenario import Feed, S

from helios_orderflow.core.events import BookDelta, BookSnapshot, Event
from helios_orderflow.core.settings import HeliosSettings, WallSettings
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.signals.heatmap import auto_bin_size
from helios_orderflow.signals.walls import WallTracker

PAIRS = tb.GATE_PAIRS + tb.KUCOIN_PAIRS

#: pair -> (tick in bp of the first mid, 3 digits; auto bin) as measured; the bin is always a whole number of ticks.
BINS = {
    "INK_USDT": (0.347, 2.5e-06),  # 25 ticks: the 10th ask is 49 % out, the range 8.7 % in 100 bins
    "HAI_ETH": (0.965, 1e-07),  # 10 ticks
    "ZKS_ETH": (9.79, 1e-06),  # one tick (was 0.1 tick: a legacy order at 0.00000001 set the inferred tick)
    "NANO_USDT": (0.114, 0.0025),
    "FAST_USDT": (9.56, 0.01),  # one tick
    "QTUM3S_USDT": (0.0439, 0.0002),
    "DIS_USDT": (0.823, 0.05),
    "NEO_BTC": (0.534, 1e-06),
    "OMG_USDT": (1.26, 0.001),  # one tick
    "BTC_USDC": (0.00183, 25.0),
    "BCHSV-USDT": (0.0412, 0.025),  # not widened: 1 bp, as before
    "SNX-BTC": (0.348, 5e-08),
    "ANKR-BTC": (0.383, 5e-10),
}

#: Pairs whose book is mostly dust (one minimum-size order repeated at many ticks: DIS_USDT 0.024, NANO_USDT
#: 0.197, ...): the median rule alone calls at least a fifth of their bins walls.
DUST_PAIRS = ("INK_USDT", "HAI_ETH", "NANO_USDT", "FAST_USDT", "DIS_USDT", "NEO_BTC")

#: The bound on walls: a trader acts on one wall per side (the nearest), and a widened window is built to hold
#: 2 x walls.min_levels = 20 levels. So at most 2 candidates in any scan of any pair, and at most 2 / 20 of
#: all bins pooled over the pairs (measured: 2, and 189 of 2726 = 6.9 %).
MAX_CANDIDATES_PER_SCAN = 2
MAX_POOLED_SHARE = 2 / 20


def _first_snapshot(pair: str) -> BookSnapshot:
    return next(e for e in tb.events(pair) if isinstance(e, BookSnapshot))


def _first_mid(pair: str) -> float:
    snap = _first_snapshot(pair)
    return (snap.bids[0][0] + snap.asks[0][0]) / 2.0


@contextmanager
def _scan_log() -> Iterator[list[tuple[int, int]]]:
    """(bins in range, candidates) of every wall scan run inside the block."""
    log: list[tuple[int, int]] = []
    scan = WallTracker.scan

    def logged(self: WallTracker, *args: Any) -> None:
        scan(self, *args)
        log.append((self.bins_in_range, self.candidates))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WallTracker, "scan", logged)
        yield log


def _replay_logged(pair: str, settings: HeliosSettings | None = None) -> tuple[PairEngine, list[tuple[int, int]]]:
    with _scan_log() as log:
        engine = tb.replay(pair, settings)
    return engine, log


@pytest.mark.parametrize("pair", PAIRS)
def test_inferred_tick_is_the_venues_tick(pair: str) -> None:
    # Far from the mid, Gate keeps orders on a finer grid than the pair trades at (ZKS_ETH: 0.00000001 and
    # 0.00001063 with a 0.000001 tick): the tick comes from the best levels only.
    assert tb.replay(pair).tick_size == tb.market(pair).tick


@pytest.mark.parametrize("pair", PAIRS)
def test_auto_bin_is_a_whole_number_of_ticks_and_one_tick_when_the_tick_exceeds_one_bp(pair: str) -> None:
    tick_bp, want = BINS[pair]
    engine = tb.replay(pair)
    tick = tb.market(pair).tick
    assert math.isclose(tick / _first_mid(pair) * 1e4, tick_bp, rel_tol=0.01)
    assert engine.bin_size == want
    ticks = Decimal(repr(engine.bin_size)) / Decimal(repr(tick))
    assert ticks == ticks.to_integral_value() and ticks >= 1
    if tick_bp > 1.0:
        assert engine.bin_size == tick


def test_auto_bin_never_splits_or_straddles_ticks() -> None:
    assert auto_bin_size(0.00288435, 1e-7) == 2e-7  # INK_USDT, 1 bp = 2.9 ticks: 2 ticks, not 2.5
    assert auto_bin_size(0.0010215, 1e-6) == 1e-6  # ZKS_ETH, tick 9.8 bp
    assert auto_bin_size(0.0010215, 1e-6, min_width=0.0001) == 1e-6  # a wide range never merges such ticks
    assert auto_bin_size(0.00288435, 1e-7, min_width=0.00288435 * 0.001) == 2.5e-6  # 10 bp wanted: 25 ticks
    assert auto_bin_size(61700.0, 0.01) == 5.0 and auto_bin_size(3000.0, 0.01) == 0.25  # dense books unchanged


@pytest.mark.parametrize("pair", PAIRS)
def test_heatmap_columns_show_both_sides_of_a_thin_book(pair: str) -> None:
    engine = tb.replay(pair)
    hm = engine.heatmap
    assert hm is not None
    cols = hm.window()
    assert cols is not None and cols.ts_us.size >= 9  # NANO_USDT's snapshot comes 4.3 s before the end
    filled = [(np.nansum(cols.bids[i]) > 0, np.nansum(cols.asks[i]) > 0) for i in range(cols.ts_us.size)]
    assert all(b and a for b, a in filled)
    # Widened, but bounded: at most max_bins_per_side bins (memory) within max_range_pct of the mid.
    s = engine.settings.heatmap
    assert hm.half_bins <= s.max_bins_per_side
    assert s.range_pct <= hm.half_bins * hm.bin_size / _first_mid(pair) * 100 <= s.max_range_pct


@pytest.mark.parametrize("pair", PAIRS)
def test_no_scan_of_a_thin_book_calls_more_than_two_bins_walls(pair: str) -> None:
    engine, log = _replay_logged(pair)
    scans = [(n, c) for n, c in log if n >= engine.settings.walls.min_bins]
    # Every scan reaches real levels (within +/-0.3 % the window held none on 7 of 13 pairs).
    assert len(scans) == len(log) >= 2
    assert max(c for _, c in scans) <= MAX_CANDIDATES_PER_SCAN


def test_few_bins_of_thin_books_are_called_walls_where_the_median_rule_alone_calls_a_fifth() -> None:
    median_only = HeliosSettings.from_dict({"walls": {"liquidity_k": 0.0}})
    pooled = {"median rule alone": [0, 0], "default": [0, 0]}  # [candidates, bins] over every scan
    for pair in PAIRS:
        for rule, settings in (("median rule alone", median_only), ("default", None)):
            _, log = _replay_logged(pair, settings)
            pooled[rule][0] += sum(c for _, c in log)
            pooled[rule][1] += sum(n for n, _ in log)
            if rule == "median rule alone" and pair in DUST_PAIRS:
                assert sum(c / n for n, c in log) / len(log) >= 0.2, pair  # 3 x the dust size is any real order
    # Pooled over the 13 pairs: 527 of 2726 bin-scans with the median rule alone (19 %), 189 (6.9 %) with both.
    (old, n_old), (new, n_new) = pooled["median rule alone"], pooled["default"]
    assert (old, n_old, new, n_new) == (527, 2726, 189, 2726)
    assert new / n_new <= MAX_POOLED_SHARE < old / n_old


def test_on_a_dust_book_only_the_order_that_stands_out_from_the_real_ones_is_a_wall() -> None:
    """Worked by hand (``_scenario``: bin 1.0, walls within +/-1 %, candidates confirmed after 2 s). Per side 6
    dust levels of 0.01 and 4 real ones of 1.0; then a bid of 10.0 at 995.5. The median of the 20 bins is the
    dust size, so 3 x median calls every real order a candidate (8 of 20 bins). The weighted median of a real
    bid's side without it: 6 x 0.01 + 3 x 1.0, half of 3.06 lies in the 1.0 bins, so 1.0 and 1.0 < 1.5 x 1.0.
    For the 10.0 bid: 1.0 too, and 10.0 >= 1.5: the only wall."""
    dust_bids = tuple((999.5 - i, 0.01 if i < 6 else 1.0) for i in range(10))
    dust_asks = tuple((1000.5 + i, 0.01 if i < 6 else 1.0) for i in range(10))
    for liquidity_k, candidates in ((0.0, 8), (1.5, 0)):
        f = Feed(walls=WallSettings(range_pct=1.0, min_age_s=2.0, scan_interval_ms=1000, liquidity_k=liquidity_k))
        f.snapshot(0, bids=dust_bids, asks=dust_asks)
        f.tick(S)
        walls = f.engine.walls
        assert walls is not None
        assert (walls.median, walls.bins_in_range, walls.candidates) == (0.01, 20, candidates)
    f.delta(S + S // 2, bids=[(995.5, 10.0)])  # replaces the 0.01 at 995.5
    for t in (2, 3, 4):
        f.tick(t * S)
    assert walls is not None and walls.candidates == 1
    (w,) = f.engine.snapshot().walls
    assert (w.side, w.level_price, w.size) == ("bid", 995.5, 10.0)


def _free_price(start: float, tick: float, direction: int, avoid: set[Decimal], beyond: float) -> float:
    """The first price on the tick grid from ``start`` outward (direction -1: down, for a bid) that no level of
    the capture ever used (a real diff there would overwrite the injected size) and that stays on its side of
    every price the other side ever quoted (``beyond``; otherwise the book would cross)."""
    t = Decimal(repr(tick))
    p = Decimal(repr(start)) + direction * t
    while p in avoid or (direction < 0 and float(p) >= beyond) or (direction > 0 and float(p) <= beyond):
        p += direction * t
    return float(p)


def _with_walls(pair: str) -> tuple[list[Event], float, float, float]:
    """The capture with one bid and one ask added to its snapshot, each 3 x the largest level the capture
    ever shows among the best walls.min_levels per side or in any diff (what any trader calls a wall), at the
    first free tick outside the best level. Returns (events, bid price, ask price, size)."""
    n = HeliosSettings().walls.min_levels
    events = tb.events(pair)
    snap = _first_snapshot(pair)
    deltas = [e for e in events if isinstance(e, BookDelta)]
    seen = {Decimal(repr(p)) for e in deltas for p, _ in e.bids + e.asks} | {
        Decimal(repr(p)) for p, _ in snap.bids + snap.asks}
    size = 3 * max(q for lv in [snap.bids[:n], snap.asks[:n], *(e.bids + e.asks for e in deltas)] for _, q in lv)
    ever_ask = min([p for p, _ in snap.asks] + [p for e in deltas for p, q in e.asks if q > 0])
    ever_bid = max([p for p, _ in snap.bids] + [p for e in deltas for p, q in e.bids if q > 0])
    tick = tb.market(pair).tick
    bid = _free_price(snap.bids[0][0], tick, -1, seen, ever_ask)
    ask = _free_price(snap.asks[0][0], tick, +1, seen, ever_bid)
    bids = tuple(sorted((*snap.bids, (bid, size)), key=lambda lv: -lv[0]))
    asks = tuple(sorted((*snap.asks, (ask, size)), key=lambda lv: lv[0]))
    out: list[Event] = [replace(e, bids=bids, asks=asks) if e is snap else e for e in events]
    return [*out, tb.end_of_capture(pair)], bid, ask, size


def _long_enough(pair: str) -> bool:
    """The capture runs on for at least walls.min_age_s + one scan after the pair's snapshot."""
    w = HeliosSettings().walls
    return tb.end_of_capture(pair).ts_us - _first_snapshot(pair).ts_us >= (w.min_age_s + w.scan_interval_ms / 1e3) * 1e6


#: Every pair but NANO_USDT, whose snapshot comes 4.3 s before the end of the capture.
LONG_ENOUGH = tuple(p for p in PAIRS if _long_enough(p))


def test_every_capture_but_nano_usdt_is_long_enough_to_confirm_a_wall() -> None:
    assert set(PAIRS) - set(LONG_ENOUGH) == {"NANO_USDT"}


@pytest.mark.parametrize("pair", LONG_ENOUGH)
def test_a_wall_injected_into_a_thin_book_is_found_on_both_sides(pair: str) -> None:
    events, bid, ask, size = _with_walls(pair)
    m = tb.market(pair)
    engine = PairEngine(m.exchange, m.symbol)
    for ev in events:
        engine.on_event(ev)
    walls = engine.snapshot().walls
    # Found by the level it holds (bin edges are b x bin_size in floats: 7895 x 0.001 = 7.8950000000000005).
    found = {w.side: w for w in walls if w.level_price in (bid, ask)}
    assert set(found) == {"bid", "ask"}
    for w, price in ((found["bid"], bid), (found["ask"], ask)):
        assert w.size >= size and w.level_price == price and w.end_reason == ""
        assert w.confirmed_us - w.first_seen_us >= engine.settings.walls.min_age_s * 1e6
    # ... and they make no other bin a wall.
    assert len(walls) - 2 <= len(tb.replay(pair).snapshot().walls)
