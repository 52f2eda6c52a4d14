"""Walls: appear, persist (confirmed after min_age_s), end pulled vs traded through; on the real stream."""

from __future__ import annotations

import _btcusdt
from _scenario import ASKS, BIDS, T0, Feed, S

from helios_orderflow.core.events import Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine


def _wall_feed() -> Feed:
    """A 10.0 bid at 995.5 (bin [995, 996)) among 1.0 levels: median bin 1.0, so it is >= 3 x median."""
    f = Feed()
    f.snapshot(0)
    f.delta(S // 2, bids=[(995.5, 10.0)])
    return f


def test_wall_appears_as_candidate_and_is_confirmed_after_min_age() -> None:
    f = _wall_feed()
    f.tick(1 * S)  # scan at T0+1s: candidate, first seen now
    assert f.engine.snapshot().walls == ()
    assert f.engine.walls is not None and len(f.engine.walls.tracks) == 1
    f.tick(2 * S)  # age 1 s < 2 s
    assert f.engine.snapshot().walls == ()
    f.tick(3 * S)  # age 2 s: confirmed
    (w,) = f.engine.snapshot().walls
    assert (w.side, w.price, w.low, w.high, w.level_price) == ("bid", 995.0, 995.0, 996.0, 995.5)
    assert (w.first_seen_us, w.confirmed_us) == (T0 + 1 * S, T0 + 3 * S)
    assert (w.size, w.peak_size, w.end_reason) == (10.0, 10.0, "")
    # mid 1000.0, far edge 995.0: 50 bps away
    assert abs(w.distance_bps - 50.0) < 1e-9
    assert f.engine.walls.median == 1.0


def test_wall_pulled_without_trades_ends_as_pulled() -> None:
    f = _wall_feed()
    for s in (1, 2, 3):
        f.tick(s * S)
    f.delta(3 * S + S // 2, bids=[(995.5, 0.0)])
    f.tick(4 * S)  # scan: size 0 < 0.25 x 10, no trades into it
    st = f.engine.snapshot()
    assert st.walls == ()
    (ended,) = st.walls_ended
    assert (ended.end_reason, ended.ended_us, ended.traded_volume) == ("pulled", T0 + 4 * S, 0.0)


def test_wall_eaten_by_taker_sells_ends_as_traded_through() -> None:
    f = _wall_feed()
    for s in (1, 2, 3):
        f.tick(s * S)
    # The bids above the wall go, then sellers eat the wall: 8 then 2 at 995.5.
    f.delta(3 * S + 100_000, bids=[(p, 0.0) for p, _ in BIDS[:4]])  # 999.5 .. 996.5 removed
    f.trade(3 * S + 200_000, 995.5, 8.0, "sell")
    f.delta(3 * S + 300_000, bids=[(995.5, 2.0)])
    f.trade(3 * S + 400_000, 995.5, 2.0, "sell")
    f.delta(3 * S + 500_000, bids=[(995.5, 0.0)])
    f.tick(4 * S)
    (ended,) = f.engine.snapshot().walls_ended
    # traded 10 >= 0.5 x (peak 10 - size 0)
    assert (ended.end_reason, ended.traded_volume, ended.peak_size, ended.size) == ("traded", 10.0, 10.0, 0.0)


def test_partly_hit_then_pulled_wall_counts_as_pulled() -> None:
    f = _wall_feed()
    for s in (1, 2, 3):
        f.tick(s * S)
    f.delta(3 * S + 100_000, bids=[(p, 0.0) for p, _ in BIDS[:4]])
    f.trade(3 * S + 200_000, 995.5, 3.0, "sell")  # 3 traded ...
    f.delta(3 * S + 300_000, bids=[(995.5, 0.0)])  # ... then the other 7 pulled
    f.tick(4 * S)
    (ended,) = f.engine.snapshot().walls_ended
    # traded 3 < 0.5 x (10 - 0) = 5
    assert (ended.end_reason, ended.traded_volume) == ("pulled", 3.0)


def test_candidate_that_vanishes_before_min_age_never_becomes_a_wall() -> None:
    f = _wall_feed()
    f.tick(1 * S)
    f.delta(S + S // 2, bids=[(995.5, 0.0)])
    for s in (2, 3, 4):
        f.tick(s * S)
    st = f.engine.snapshot()
    assert st.walls == () and st.walls_ended == () and not f.engine.walls.tracks


def test_ask_wall_price_is_the_far_edge_of_its_bin() -> None:
    f = Feed()
    f.snapshot(0)
    f.delta(S // 2, asks=[(1004.5, 12.0)])
    for s in (1, 2, 3):
        f.tick(s * S)
    (w,) = f.engine.snapshot().walls
    assert (w.side, w.price, w.low, w.high, w.size) == ("ask", 1005.0, 1004.0, 1005.0, 12.0)


def test_wall_leaving_the_range_ends_out_of_range() -> None:
    f = _wall_feed()
    for s in (1, 2, 3):
        f.tick(s * S)
    # The book moves up 10: mid 1010.0, range +/- 10.1 -> 999.9; the 995 bin is out.
    f.delta(3 * S + S // 2, bids=[(1009.5, 1.0)], asks=[(p, 0.0) for p, _ in ASKS] + [(1010.5, 1.0)])
    f.tick(4 * S)
    (ended,) = f.engine.snapshot().walls_ended
    assert ended.end_reason == "out_of_range"


def test_sequence_gap_ends_walls_as_desync_and_hides_them() -> None:
    f = _wall_feed()
    for s in (1, 2, 3):
        f.tick(s * S)
    f.uid += 5  # ids jump: gap
    f.delta(3 * S + S // 2, bids=[(999.5, 2.0)])
    st = f.engine.snapshot()
    assert not st.health.book_ok and st.health.gaps == 1
    assert st.walls == () and st.walls_ended[-1].end_reason == "desync"


def test_real_stream_walls_are_large_bins_and_end_with_a_known_reason() -> None:
    s = HeliosSettings()
    engine = PairEngine(_btcusdt.EXCHANGE, _btcusdt.SYMBOL, s)
    seen: dict[tuple[str, float], object] = {}
    checked = 0
    for ev in _btcusdt.events():
        engine.on_event(ev)
        if type(ev) is Trade and engine.walls is not None and engine.walls.tracks and checked < 200:
            st = engine.snapshot()
            for w in st.walls:
                seen[(w.side, w.price)] = w
                # a wall was >= size_k x median when first seen, and has been around for min_age_s
                assert w.confirmed_us - w.first_seen_us >= s.walls.min_age_s * 1e6
                assert w.peak_size >= w.size >= s.walls.end_frac * w.peak_size
                assert (w.price == w.low) if w.side == "bid" else (w.price == w.high)
                assert w.distance_bps <= s.walls.range_pct * 100 + 1e-9
            checked += 1
    st = engine.snapshot()
    ended = list(engine.walls.ended)
    assert engine.walls.ended_count >= 10  # the 11 minutes see many walls come and go (18 with defaults)
    assert {w.end_reason for w in ended} <= {"traded", "pulled", "out_of_range"}
    assert any(w.end_reason == "pulled" for w in ended)
    assert st.bin_size == 5.0 and st.tick_size == 0.01
    assert seen
