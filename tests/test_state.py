"""SharedState: immutable per-pair snapshots swapped in whole, read without locks, health at read time."""

from __future__ import annotations

import dataclasses
import itertools
import pickle
import threading
from collections.abc import Callable

import pytest

from helios_orderflow.core.settings import HealthSettings
from helios_orderflow.live.health import HealthTracker, PairHealth
from helios_orderflow.live.state import PairSnapshot, SharedState


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _snap(state: SharedState, symbol: str, seq: int, health: PairHealth) -> PairSnapshot:
    return PairSnapshot(exchange="binance", symbol=symbol, health=health, best_bid=float(seq),
                        best_ask=float(seq) + 1.0, local_ts_us=seq, seq=seq)


def test_every_pair_exists_from_the_start_empty_and_unhealthy():
    state = SharedState("binance", ["BTC/USDT", "ETH/USDT", "BTC/USDT"], clock=FakeClock())
    assert state.symbols == ("BTC/USDT", "ETH/USDT")
    snap = state.get("ETH/USDT")
    assert snap is not None and snap.seq == 0 and snap.engine is None and snap.history == ()
    assert not state.is_healthy("ETH/USDT")
    assert state.problems("ETH/USDT") == ("no book received yet",)
    assert state.age_s("ETH/USDT") == float("inf")


def test_a_pair_not_fed_reads_as_missing_and_unhealthy_and_cannot_be_published():
    state = SharedState("binance", ["BTC/USDT"], clock=FakeClock())
    assert state.get("DOGE/USDT") is None and state.history("DOGE/USDT") == ()
    assert not state.is_healthy("DOGE/USDT")
    assert "not fed" in state.problems("DOGE/USDT")[0]
    with pytest.raises(KeyError):
        state.publish(PairSnapshot("binance", "DOGE/USDT", PairHealth("binance", "DOGE/USDT")))


def test_health_turns_stale_at_read_time_after_the_threshold_without_any_new_publication():
    clock = FakeClock(100.0)
    state = SharedState("binance", ["BTC/USDT"], HealthSettings(stale_after_s=5.0), clock=clock)
    tracker = HealthTracker("binance", "BTC/USDT", clock)
    tracker.on_book(snapshot=True, crossed=False)
    state.publish(_snap(state, "BTC/USDT", 1, tracker.snapshot()))
    clock.t = 104.9
    assert state.is_healthy("BTC/USDT") and state.problems("BTC/USDT") == ()
    assert state.age_s("BTC/USDT") == pytest.approx(4.9)
    clock.t = 105.1
    assert not state.is_healthy("BTC/USDT")
    assert state.problems("BTC/USDT") == ("stale: no book update for 5.1 s (limit 5 s)",)


def _race_a_reader(state: SharedState, publish: Callable[[int], None], n: int) -> tuple[list[int], list[PairSnapshot]]:
    """Publish seq 1..n while a reader thread reads BTC/USDT without locks. Every 100 publications the writer
    waits until the reader has read again, so the two really interleave however busy the machine is. Returns
    (seq of every read, the torn snapshots seen); an exception in the reader fails the caller."""
    seen: list[int] = []
    torn: list[PairSnapshot] = []
    errors: list[BaseException] = []
    reads = [0]
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                s = state.get("BTC/USDT")
                if s is None:
                    raise AssertionError("a fed pair read as missing")
                if s.seq and (s.best_bid != s.seq or s.best_ask != s.seq + 1.0 or s.local_ts_us != s.seq):
                    torn.append(s)
                seen.append(s.seq)
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for seq in range(1, n + 1):
            publish(seq)
            if seq % 100 == 0:
                before = reads[0]
                while reads[0] == before and reader.is_alive():
                    threading.Event().wait(0.0005)
    finally:
        done.set()
        reader.join()
    if errors:
        raise errors[0]
    return seen, torn


def test_a_reader_thread_only_ever_sees_whole_snapshots_in_publication_order():
    state = SharedState("binance", ["BTC/USDT", "ETH/USDT"], clock=FakeClock())
    health = PairHealth("binance", "BTC/USDT")
    n = 20_000
    seen, torn = _race_a_reader(state, lambda seq: state.publish(_snap(state, "BTC/USDT", seq, health)), n)
    assert torn == []
    assert len(set(seen)) >= n // 100  # the reader saw the publications as they happened, not only the end
    assert all(a <= b for a, b in itertools.pairwise(seen))  # never goes back in time
    assert state.get("BTC/USDT").seq == n and state.get("ETH/USDT").seq == 0


def test_the_race_check_catches_a_writer_that_publishes_half_a_snapshot():
    # The check above, against a deliberately broken writer that swaps in the new best bid first and the best
    # ask a moment later: the reader must catch the half-written state.
    state = SharedState("binance", ["BTC/USDT"], clock=FakeClock())
    health = PairHealth("binance", "BTC/USDT")

    def torn_publish(seq: int) -> None:
        whole = _snap(state, "BTC/USDT", seq, health)
        half = dataclasses.replace(whole, best_ask=float(seq))  # the old ask's place still holds the bid
        state.publish(half)
        if seq % 100 == 0:
            threading.Event().wait(0.002)  # the half-written state stays visible for a moment
        state.publish(whole)

    _, torn = _race_a_reader(state, torn_publish, 2_000)
    assert torn, "a reader never saw the half-published snapshot: the race check cannot fail"


def test_snapshots_are_immutable():
    state = SharedState("binance", ["BTC/USDT"], clock=FakeClock())
    snap = state.get("BTC/USDT")
    with pytest.raises(AttributeError):
        snap.seq = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        snap.health.gaps = 1  # type: ignore[misc]


def test_published_history_is_the_engines_bounded_history_copied_only_when_a_candle_closes():
    from helios_orderflow.core.events import Trade
    from helios_orderflow.core.settings import HeliosSettings
    from helios_orderflow.engine.pair_engine import PairEngine
    from helios_orderflow.live.publish import Pair, _update_history

    settings = HeliosSettings.from_dict({"flow": {"candle_history": 3}})
    engine = PairEngine("binance", "BTC/USDT", settings, timeframe="1m")
    pair = Pair("binance", "BTC/USDT", 20, engine, FakeClock())
    minute = 60_000_000
    for i in range(6):  # trades in minutes 0..5: candles 0..4 close
        engine.on_event(Trade("binance", "BTC/USDT", i * minute + 1, i * minute + 1, 100.0 + i, 1.0, "buy", str(i)))
        _update_history(pair)
    rows = pair.history
    assert engine.candles_closed == 5
    assert [round(r.close, 6) for r in rows] == [102.0, 103.0, 104.0]  # the newest 3 of 5, oldest first
    assert rows == tuple(engine.history)
    _update_history(pair)
    assert pair.history is rows  # no candle closed: the same tuple, nothing copied


def test_state_pickles_for_analysis_but_keeps_its_snapshots():
    state = SharedState("binance", ["BTC/USDT"], clock=FakeClock())
    tracker = HealthTracker("binance", "BTC/USDT", FakeClock(5.0))
    tracker.on_book(snapshot=True, crossed=False)
    state.publish(_snap(state, "BTC/USDT", 3, tracker.snapshot()))
    back = pickle.loads(pickle.dumps(state))
    assert back.get("BTC/USDT") == state.get("BTC/USDT")
