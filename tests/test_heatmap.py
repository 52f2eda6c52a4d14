"""Heatmap: bins, columns worked by hand, trade volume per bin by taker side, fixed ring memory; real stream."""

from __future__ import annotations

import math

import _btcusdt
import numpy as np
import pytest
from _scenario import T0, Feed, S

from helios_orderflow.core.settings import HeatmapSettings, HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.signals.heatmap import auto_bin_size, bin_index, infer_tick


def test_auto_bin_is_a_round_multiple_of_the_tick_near_one_basis_point() -> None:
    assert auto_bin_size(61700.0, 0.01) == 5.0  # 1 bp = 6.17
    assert auto_bin_size(3000.0, 0.01) == 0.25  # 1 bp = 0.30
    assert auto_bin_size(0.5, 0.0001) == 0.0001  # 1 bp below one tick: one tick
    assert infer_tick([61837.63, 61837.6, 61000.0]) == 0.01
    assert bin_index(0.3, 0.1) == 3  # not 2 (0.3 / 0.1 = 2.9999999999999996 in floats)


def test_column_holds_resting_size_per_bin_and_traded_volume_by_side() -> None:
    f = Feed()  # bin 1.0, range +/-1 % of mid 1000 -> 10 bins each way, a column every 500 ms, window 2 s
    f.snapshot(0)
    f.trade(100_000, 1000.5, 0.3, "buy")
    f.trade(200_000, 999.5, 0.2, "sell")
    f.trade(300_000, 999.7, 0.1, "sell")
    f.tick(S // 2)
    hm = f.engine.snapshot().heatmap
    assert hm is not None and hm.seq == 1 and hm.half_bins == 10 and hm.bin_size == 1.0
    assert (int(hm.ts_us[-1]), int(hm.anchor_bin[-1])) == (T0 + S // 2, 1000)
    # bids 990.5 .. 999.5 (1.0 each) in bins 990 .. 999 = bids[0..9]; bin 1000 (the mid's) has no bid
    assert hm.bids[-1].tolist() == [1.0] * 10 + [0.0]
    # asks 1000.5 .. 1009.5 in bins 1000 .. 1009 = asks[0..9]
    assert hm.asks[-1].tolist() == [1.0] * 10 + [0.0]
    # trades: bin 1000 -> index 10 (buy 0.3); bin 999 -> index 9 (sell 0.2 + 0.1)
    buy, sell = hm.buy[-1], hm.sell[-1]
    assert buy[10] == pytest.approx(0.3) and buy.sum() == pytest.approx(0.3)
    assert sell[9] == pytest.approx(0.3) and sell.sum() == pytest.approx(0.3)
    assert list(hm.bid_prices(0)[[0, -1]]) == [990.0, 1000.0]
    with pytest.raises(ValueError):
        hm.bids[0, 0] = 5.0  # read-only view


def test_ring_memory_is_fixed_by_settings_not_run_length() -> None:
    f = Feed()
    f.snapshot(0)
    hm = f.engine.heatmap
    assert hm is not None and hm.capacity == 4  # 2 s / 500 ms
    nbytes = sum(a.nbytes for a in (hm.ts_us, hm.anchor_bin, hm.bids, hm.asks, hm.buy, hm.sell))
    for k in range(1, 41):
        f.delta(k * S // 4, bids=[(990.5, 1.0 + k)])
    f.tick(11 * S)
    assert hm.seq == 22 and nbytes == sum(a.nbytes for a in (hm.ts_us, hm.anchor_bin, hm.bids, hm.asks, hm.buy,
                                                              hm.sell))
    window = hm.window()
    assert window is not None and len(window.ts_us) == 4
    assert window.ts_us.tolist() == [T0 + 9 * S + S // 2, T0 + 10 * S, T0 + 10 * S + S // 2, T0 + 11 * S]
    # 990.5 is set to 1 + k at k/4 s: the column at 9.5 s shows 38 (set at 9.25 s; the change at exactly 9.5 s
    # comes after the sample), the columns from 10.5 s the last value 41 (set at 10 s)
    assert window.bids[-2][0] == window.bids[-1][0] == 41.0 and window.bids[0][0] == 38.0


def test_out_of_sync_columns_are_unknown_not_empty() -> None:
    f = Feed()
    f.snapshot(0)
    f.uid += 2
    f.delta(100_000, bids=[(999.5, 3.0)])  # gap
    f.tick(S // 2)
    hm = f.engine.snapshot().heatmap
    assert hm is not None and math.isnan(float(hm.bids[-1][0]))


def test_real_stream_columns_match_the_book_at_sample_time() -> None:
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, HeliosSettings(heatmap=HeatmapSettings(window_s=60.0)))
    checked = 0
    seq = 0
    for ev in _btcusdt.events():
        due = engine._next_sample if engine.heatmap is not None else None
        if due is not None and ev.ts_us >= due and engine._book_ok and checked < 20:
            # the column about to be written describes this book: recompute it straight from the levels
            mid = engine.snapshot().mid
            assert mid is not None
            bs = engine.bin_size
            hm = engine.heatmap
            assert hm is not None
            a = math.floor(mid / bs + 1e-9)
            want = np.zeros(hm.half_bins + 1)
            for p, q in engine.book.bids.levels.items():
                j = math.floor(p / bs + 1e-9) - (a - hm.half_bins)
                if 0 <= j <= hm.half_bins:
                    want[j] += q
            engine.on_event(ev)
            col = engine.heatmap.columns(1)
            assert col is not None and col.seq > seq
            np.testing.assert_allclose(col.bids[-1], want.astype(np.float32), rtol=1e-6)
            seq = col.seq
            checked += 1
        else:
            engine.on_event(ev)
    assert checked == 20
    assert engine.heatmap is not None and engine.heatmap.seq > 1200  # ~650 s at 2 columns/s
