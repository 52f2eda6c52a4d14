"""The local exchange's pieces without sockets: instruments, the synthetic model, candles, faults, synth."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from helios_orderflow.book.sync import BookSync
from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.events import BestBidOffer, BookDelta, BookSnapshot, Trade
from helios_orderflow.emulator.faults import parse_faults
from helios_orderflow.emulator.instruments import instrument
from helios_orderflow.emulator.market import MarketState
from helios_orderflow.emulator.synth import synth_events
from helios_orderflow.emulator.synthetic import SyntheticModel, SyntheticSource

ORIGIN = 1_704_067_200_000_000  # 2024-01-01 UTC


def test_instrument_formats_prices_exactly_on_binance_filters():
    spot = instrument("BTC/USDT")
    assert (spot.wire, spot.tick, spot.step, spot.market) == ("BTCUSDT", "0.01", "0.00001", "spot")
    assert spot.format_price(6_000_001_000_000) == "60000.01000000"
    assert spot.price(6_000_001_000_000) == 60000.01
    fut = instrument("BTC/USDT:USDT")
    assert (fut.wire, fut.tick, fut.step, fut.market) == ("BTCUSDT", "0.10", "0.001", "linear")
    assert fut.format_price(6_000_010) == "60000.10" and fut.tick_units == 10
    assert fut.format_qty(1234) == "1.234"
    with pytest.raises(HeliosError, match="unified symbol"):
        instrument("BTCUSDT")


def _stream(seed: int, chunks_us: list[int]) -> list[tuple]:
    inst = instrument("ETH/USDT")
    st = MarketState(inst)
    model = SyntheticModel(inst, seed, st, ORIGIN)
    out = []
    t = ORIGIN
    for step in chunks_us:
        t += step
        model.advance(t)
        out.append((t,))
    batch = st.flush(t // 1000)
    out.append((st.last_update_id, tuple(sorted(st.bids.items())), tuple(sorted(st.asks.items())),
                tuple((x.trade_id, x.price_units, x.qty_units) for x in batch.trades)))
    return out[-1:]


def test_synthetic_market_is_a_function_of_seed_and_elapsed_time_not_of_call_chunking():
    one_go = _stream(5, [30_000_000])
    in_steps = _stream(5, [100_000] * 300)
    other_seed = _stream(6, [30_000_000])
    assert one_go == in_steps
    assert one_go != other_seed
    assert len(one_go[0][3]) > 20  # trades happened in 30 s


def test_a_warmed_up_synthetic_market_serves_the_book_the_model_reached_and_a_fuller_one_than_at_seeding():
    symbols = ["BTC/USDT", "SOL/USDT"]
    warm = SyntheticSource(symbols, seed=3, origin_us=ORIGIN, history_minutes=5, warm_up_s=900)
    # The same market started 15 minutes earlier and run up to ORIGIN by hand.
    by_hand = SyntheticSource(symbols, seed=3, origin_us=ORIGIN - 900_000_000, history_minutes=5)
    by_hand.advance(ORIGIN)
    fresh = SyntheticSource(symbols, seed=3, origin_us=ORIGIN, history_minutes=5)
    for w, h, f in zip(warm.states, by_hand.states, fresh.states, strict=True):
        h.flush(ORIGIN // 1000)
        assert (w.bids, w.asks, w.last_update_id) == (h.bids, h.asks, h.last_update_id)
        assert len(w.bids) + len(w.asks) >= 1.2 * (len(f.bids) + len(f.asks))
        # The warm-up's changes are history: serving starts with nothing pending, ids continuing.
        assert w._pend_ops == 0 and w.last_update_id > f.last_update_id + 50_000
        # Candles: the 5 back-filled minutes end where the warm-up starts, its trades make the next 15.
        start_minute = (ORIGIN - 900_000_000) // 60_000_000
        assert (w.candles.first, w.candles.last) == (start_minute - 5, ORIGIN // 60_000_000 - 1)
        assert all(w.candles.minutes[m][7] > 0 for m in range(start_minute, start_minute + 15))  # traded
    assert warm.origin_us == ORIGIN
    with pytest.raises(HeliosError, match="warm-up must be >= 0"):
        SyntheticSource(symbols, warm_up_s=-1)


def test_synthetic_book_is_never_crossed_and_shows_walls_trends_and_reversals_within_ten_minutes():
    src = SyntheticSource(["BTC/USDT", "SOL/USDT"], seed=11, origin_us=ORIGIN, history_minutes=0)
    t = ORIGIN
    mids: dict[str, list[float]] = {s.inst.symbol: [] for s in src.states}
    for step in range(6000):  # 10 minutes in 100 ms steps
        t += 100_000
        src.advance(t)
        for st in src.states:
            st.flush(t // 1000)
            bb, ba = st.best_bid(), st.best_ask()
            assert bb is not None and ba is not None and bb < ba
            if step % 600 == 0:
                mids[st.inst.symbol].append(st.inst.price((bb + ba) // 2))
    for model in src.models:
        s = model.stats
        assert s["walls"] >= 8, s
        assert s["walls_pulled"] >= 3, s
        assert s["walls_absorbed"] >= 1, s
        assert s["reversals"] >= 2, s
        assert len(model.bids) >= 40 and len(model.asks) >= 40  # a deep book on both sides
    btc = mids["BTC/USDT"]
    assert max(btc) - min(btc) > 20.0  # BTC moved more than $20 in 10 minutes


def test_synthetic_diffs_rebuild_the_servers_book_through_helios_sequence_rules():
    events = list(synth_events(["BTC/USDT", "ETH/USDT:USDT"], 3, ORIGIN, 120_000_000))
    assert isinstance(events[0], BookSnapshot) and isinstance(events[2], BookSnapshot)
    syncs = {}
    for ev in events:
        if isinstance(ev, BookSnapshot):
            syncs[ev.symbol] = BookSync()
            syncs[ev.symbol].on_snapshot(ev)
        elif isinstance(ev, BookDelta):
            syncs[ev.symbol].on_delta(ev)
    for sym, sync in syncs.items():
        assert sync.gaps == 0 and sync.in_sync, sym
        assert sync.applied > 1000
    # every BestBidOffer equals the best of the book rebuilt up to it
    src_books = {}
    checked = 0
    for ev in events:
        if isinstance(ev, BookSnapshot):
            src_books[ev.symbol] = BookSync()
            src_books[ev.symbol].on_snapshot(ev)
        elif isinstance(ev, BookDelta):
            src_books[ev.symbol].on_delta(ev)
        elif isinstance(ev, BestBidOffer):
            book = src_books[ev.symbol].book
            assert book.best_bid() == (ev.bid_price, ev.bid_amount)
            assert book.best_ask() == (ev.ask_price, ev.ask_amount)
            checked += 1
    assert checked > 500
    trade_ids = [int(e.trade_id) for e in events if isinstance(e, Trade) and e.symbol == "BTC/USDT"]
    assert trade_ids == list(range(1, len(trade_ids) + 1))


def test_candles_back_fill_and_aggregate_like_binance():
    inst = instrument("BTC/USDT")
    st = MarketState(inst)
    end_ms = ORIGIN // 1000
    st.candles.backfill(end_ms, 600, "x", 10**8, inst.price_to_units(60000.0))
    rows = st.candles.klines("1m", None, None, 1000)
    assert len(rows) == 600
    assert rows[-1][0] == end_ms - 60_000
    assert inst.price(rows[-1][4]) == 60000.0  # the history ends where the live market starts
    assert all(r[3] <= min(r[1], r[4]) and r[2] >= max(r[1], r[4]) for r in rows)
    five = st.candles.klines("5m", end_ms - 3_600_000, None, 1000)
    assert len(five) == 12 and five[0][0] == end_ms - 3_600_000
    assert five[0][5] == sum(r[5] for r in rows[-60:-55])
    # a trade opens the live candle; a quiet minute repeats the close with zero volume
    st.add_trade(end_ms + 1_000, inst.price_to_units(60010.0), 10**5, True, True)
    st.candles.ensure_until(end_ms + 120_500)
    live = st.candles.klines("1m", end_ms, None, 10)
    assert [inst.price(c[4]) for c in live] == [60010.0, 60010.0, 60010.0]
    assert [c[5] for c in live] == [10**5, 0, 0]
    with pytest.raises(HeliosError, match="interval"):
        st.candles.klines("7m", None, None, 10)


def test_fault_spec_parses_rates_every_nth_and_seconds_and_rejects_bad_items():
    plan = parse_faults("drop=1/3,dup=0.5,disconnect=30,noping=5,seed=7,after=2")
    assert plan.disconnect_s == 30 and plan.noping_s == 5 and plan.seed == 7 and plan.after_s == 2
    fired = [plan.fires("drop", "BTC/USDT", 10.0) for _ in range(9)]
    assert fired == [False, False, True] * 3
    assert not plan.fires("drop", "BTC/USDT", 1.0)  # before 'after'
    first, second = parse_faults("dup=0.5,seed=7"), parse_faults("dup=0.5,seed=7")
    b = [first.fires("dup", "X", 9) for _ in range(40)]
    assert b == [second.fires("dup", "X", 9) for _ in range(40)]  # seeded: the same decisions every run
    assert 5 < sum(b) < 35 and first.counts["dup"] == sum(b)
    for bad in ("drop", "drop=2", "nosuch=1", "disconnect=0", "seed=x", "dup=1/0"):
        with pytest.raises(HeliosError, match="--faults item"):
            parse_faults(bad)


def test_synth_writes_a_recording_the_reader_reads_back_gap_free(tmp_path: Path):
    from helios_orderflow.emulator.synth import write_synthetic
    from helios_orderflow.recording.reader import list_streams, read_events

    n, _ = write_synthetic(str(tmp_path / "rec"), ["BTC/USDT", "SOL/USDT:USDT"], 2, ORIGIN, 60_000_000)
    assert list_streams(tmp_path / "rec") == [("binance", "BTC/USDT"), ("binanceusdm", "SOL/USDT:USDT")]
    back = list(read_events(tmp_path / "rec"))
    assert len(back) == n
    assert back == list(synth_events(["BTC/USDT", "SOL/USDT:USDT"], 2, ORIGIN, 60_000_000))
    fut = [e for e in back if isinstance(e, BookDelta) and e.symbol == "SOL/USDT:USDT"]
    assert all(b.prev_update_id == a.update_id for a, b in itertools.pairwise(fut))


def test_synth_and_exchange_commands_report_bad_input_without_traceback(tmp_path: Path, capsys):
    from helios_orderflow.cli.main import main

    assert main(["synth", "--symbols", "BTC/USDT", "--hours", "0.002", "--seed", "1", "--out",
                 str(tmp_path / "rec")]) == 0
    assert "events/s" in capsys.readouterr().out
    assert main(["synth", "--hours", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["exchange", "--synthetic", "--faults", "drop=5"]) == 2
    assert main(["exchange", "--synthetic", "--symbols", "BTCUSDT"]) == 2
    err = capsys.readouterr().err
    assert "--faults item 'drop=5'" in err and "unified symbol" in err
