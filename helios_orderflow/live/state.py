"""SharedState: what the live feed thread publishes and Freqtrade's callbacks read, without waiting.

Per pair the feed thread builds a new immutable ``PairSnapshot`` and swaps it in with one dict item
assignment. Under CPython's GIL that assignment is atomic and a reader's ``dict.get`` sees either the old
or the new snapshot, never half of one; readers never take a lock, so nothing they do can wait on
network code. Every key exists from construction on (one empty snapshot per pair); a pair that joins or
leaves later (``add``/``remove``, the feed following Freqtrade's whitelist) swaps in a new dict, so the dict a
reader holds never changes size while it iterates.

Reading costs a dict lookup (well under 5 µs; ``state_read_us`` in ``make bench``). Health verdicts that
depend on time (the age of the last book update) are computed at read time from the clock SharedState
was given (``time.monotonic`` by default, the same clock the feed stamps with), so a feed that has
stopped publishing still turns stale.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from helios_orderflow.core.settings import HealthSettings
from helios_orderflow.live.health import PairHealth


@dataclass(frozen=True, slots=True)
class PairSnapshot:
    """One pair as of one publication. Never mutated: a new one replaces it.

    - ``engine``: the engine's own immutable state (``PairState``: features, walls, absorption and
      exhaustion signals, newest heatmap columns, last closed candle's features); None before the first
      event or when the feed runs without an engine (pure recording).
    - ``health``: the feed's counters for the pair (see ``health.py``); time-dependent verdicts via
      ``SharedState.is_healthy``/``age_s``/``problems``.
    - ``history``: the pair's closed per-candle feature rows, oldest first: the engine's own bounded history
      (``flow.candle_history`` rows), copied when a candle closes (the live dataframe).
    - ``best_bid``/``best_ask``: of the last observed book (None before one, or on an empty side).
    - ``local_ts_us``: receive time (µs) of the newest event published; ``published_mono_s``: the feed's
      monotonic clock at publication; ``seq``: this pair's publication count (0 = never published).
    """

    exchange: str
    symbol: str
    health: PairHealth
    engine: Any = None
    history: tuple[Any, ...] = ()
    best_bid: float | None = None
    best_ask: float | None = None
    local_ts_us: int = 0
    published_mono_s: float | None = None
    seq: int = 0


class SharedState:
    """Per-pair immutable snapshots, published by one feed thread, read by any thread without locks.

    ``exchange``: ccxt id; ``symbols``: the pairs (unified symbols); ``health``: thresholds for the
    ``healthy`` verdict; ``clock``: monotonic seconds used at read time (inject a fake one in tests).
    """

    def __init__(
        self,
        exchange: str,
        symbols: Iterable[str],
        health: HealthSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exchange = exchange
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self.health_settings = health or HealthSettings()
        self.clock = clock
        self._pairs: dict[str, PairSnapshot] = {
            s: PairSnapshot(exchange=exchange, symbol=s, health=PairHealth(exchange=exchange, symbol=s))
            for s in self.symbols
        }

    # ---- readers (any thread) ---------------------------------------------------------------------------

    def get(self, symbol: str) -> PairSnapshot | None:
        """The newest snapshot of ``symbol``; None for a pair this state does not carry."""
        return self._pairs.get(symbol)

    def all(self) -> dict[str, PairSnapshot]:
        """Every pair's newest snapshot (a new dict; the snapshots themselves are shared and immutable)."""
        return dict(self._pairs)

    def history(self, symbol: str) -> tuple[Any, ...]:
        """The pair's closed per-candle feature rows, oldest first (empty for an unknown pair)."""
        snap = self._pairs.get(symbol)
        return () if snap is None else snap.history

    def age_s(self, symbol: str) -> float:
        """Seconds since the pair's last book update, now; ``inf`` if none (or unknown pair)."""
        snap = self._pairs.get(symbol)
        return math.inf if snap is None else snap.health.age_s(self.clock())

    def is_healthy(self, symbol: str) -> bool:
        """The pair's ``healthy`` flag now (False for an unknown pair); see ``health.py`` for the rules."""
        snap = self._pairs.get(symbol)
        return snap is not None and snap.health.is_healthy(self.clock(), self.health_settings)

    def problems(self, symbol: str) -> tuple[str, ...]:
        """Why the pair is unhealthy now (empty when healthy), for log lines and rejections."""
        snap = self._pairs.get(symbol)
        if snap is None:
            return (f"{symbol} is not fed (pairs: {', '.join(self.symbols)})",)
        return snap.health.problems(self.clock(), self.health_settings)

    def warnings(self, symbol: str) -> tuple[str, ...]:
        """What is wrong with the pair without making it unhealthy (e.g. recording paused on a full disk),
        for log lines and the page; empty when nothing is (or for a pair this state does not carry)."""
        snap = self._pairs.get(symbol)
        return () if snap is None else snap.health.warnings()

    # ---- writer (the feed thread only) --------------------------------------------------------------------

    def add(self, symbol: str) -> None:
        """Carry ``symbol`` from now on (an empty snapshot until the feed publishes one). Readers holding the
        old mapping keep reading it: the new one is swapped in whole, so no reader sees the dict change size."""
        if symbol in self._pairs:
            return
        pairs = dict(self._pairs)
        pairs[symbol] = PairSnapshot(exchange=self.exchange, symbol=symbol,
                                     health=PairHealth(exchange=self.exchange, symbol=symbol))
        self._pairs = pairs
        self.symbols = (*self.symbols, symbol)

    def remove(self, symbol: str) -> None:
        """Stop carrying ``symbol`` (a pair that left the feed): readers then get None for it, as for any pair
        the state does not carry. Swapped in whole, like ``add``."""
        if symbol not in self._pairs:
            return
        self._pairs = {s: snap for s, snap in self._pairs.items() if s != symbol}
        self.symbols = tuple(s for s in self.symbols if s != symbol)

    def publish(self, snapshot: PairSnapshot) -> None:
        """Swap in ``snapshot`` for its pair (one atomic dict item assignment)."""
        if snapshot.symbol not in self._pairs:
            raise KeyError(f"{snapshot.symbol} is not one of this state's pairs: {', '.join(self.symbols)}")
        self._pairs[snapshot.symbol] = snapshot
