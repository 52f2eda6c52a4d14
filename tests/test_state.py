"""SharedState: immutable per-pair snapshots swapped in whole, read without locks, health at read time."""

from __future__ import annotations

import itertools
import pickle
import threading

import pytest

from helios_orderflow.core.settings import HealthSettings
from helios_orderflow.live.health import HealthTracker, PairHealth
from helios_orderflow.live.state import CandleHistory, PairSnapshot, SharedState


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


def test_a_reader_thread_only_ever_sees_whole_snapshots_in_publication_order():
    state = SharedState("binance", ["BTC/USDT", "ETH/USDT"], clock=FakeClock())
    health = PairHealth("binance", "BTC/USDT")
    n = 20_000
    seen: list[int] = []
    torn: list[PairSnapshot] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            s = state.get("BTC/USDT")
            assert s is not None
            if s.seq and (s.best_bid != s.seq or s.best_ask != s.seq + 1.0 or s.local_ts_us != s.seq):
                torn.append(s)
            seen.append(s.seq)

    reader = threading.Thread(target=read)
    reader.start()
    for seq in range(1, n + 1):
        state.publish(_snap(state, "BTC/USDT", seq, health))
    done.set()
    reader.join()
    assert torn == []
    assert all(a <= b for a, b in itertools.pairwise(seen))  # never goes back in time
    assert state.get("BTC/USDT").seq == n and state.get("ETH/USDT").seq == 0


def test_snapshots_are_immutable():
    state = SharedState("binance", ["BTC/USDT"], clock=FakeClock())
    snap = state.get("BTC/USDT")
    with pytest.raises(AttributeError):
        snap.seq = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        snap.health.gaps = 1  # type: ignore[misc]


def test_candle_history_is_bounded_and_hands_out_the_same_tuple_until_it_changes():
    h = CandleHistory(3)
    assert h.rows() == ()
    for i in range(5):
        h.add(i)
    rows = h.rows()
    assert rows == (2, 3, 4) and h.rows() is rows
    h.add(5)
    assert h.rows() == (3, 4, 5) and rows == (2, 3, 4)
    with pytest.raises(ValueError):
        CandleHistory(0)


def test_state_pickles_for_analysis_but_keeps_its_snapshots():
    state = SharedState("binance", ["BTC/USDT"], clock=FakeClock())
    tracker = HealthTracker("binance", "BTC/USDT", FakeClock(5.0))
    tracker.on_book(snapshot=True, crossed=False)
    state.publish(_snap(state, "BTC/USDT", 3, tracker.snapshot()))
    back = pickle.loads(pickle.dumps(state))
    assert back.get("BTC/USDT") == state.get("BTC/USDT")
