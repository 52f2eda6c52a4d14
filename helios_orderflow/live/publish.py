"""What the feed thread keeps per pair (``Pair``), its totals (``FeedStats``) and the way out for every event:
to the pair's engine and the recorder in one order (``Publisher._emit``), then into SharedState as a new
immutable snapshot (``_publish``), with trades, quotes and the engines' timer work batched per socket read."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from helios_orderflow.book.diff import BookDiffer
from helios_orderflow.core.events import BestBidOffer, BookSnapshot, Event, FeedGap, Trade
from helios_orderflow.core.trade_ids import TradeIdGuard, has_increasing_trade_ids
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.live.health import HealthTracker
from helios_orderflow.live.state import PairSnapshot, SharedState
from helios_orderflow.live.trade_tape import TradeTape
from helios_orderflow.live.warmup import settled_blob
from helios_orderflow.recording.recorder import Recorder

log = logging.getLogger(__name__)


@dataclass
class FeedStats:
    """Totals since the Feed was created (read from any thread; plain ints)."""

    events: int = 0
    book_snapshots: int = 0
    book_deltas: int = 0
    trades: int = 0
    bbo: int = 0
    gaps: int = 0
    engine_errors: int = 0
    publications: int = 0
    recorder_errors: int = 0
    duplicate_trades: int = 0  # trades delivered again and dropped (see ``trade_ids.py``)
    gc_collections: int = 0  # the feed's paced garbage collections (``gc_pacer.py``), full ones apart
    gc_full_collections: int = 0
    gc_max_pause_us: int = 0
    by_symbol: dict[str, int] = field(default_factory=dict)


class Pair:
    """Everything the feed thread keeps for one pair."""

    __slots__ = ("books_handled", "differ", "candles_seen", "dup_logged_mono_s", "engine", "engine_broken", "health",
                 "history", "last_bbo", "last_trade", "local_ts_us", "next_checkpoint_us", "seq", "symbol", "trade_ids",
                 "trade_tape", "warmed")

    def __init__(self, exchange: str, symbol: str, depth: int, engine: PairEngine | None,
                 clock: Callable[[], float]) -> None:
        self.symbol = symbol
        self.differ = BookDiffer(exchange, symbol, depth)
        self.books_handled = 0  # book observations handled (by the resolve hook or the book loop)
        self.health = HealthTracker(exchange, symbol, clock)
        self.engine = engine
        self.engine_broken = False
        #: The engine's closed candles as published (one history: the engine's own bounded one, copied into a
        #: tuple only when a candle has closed since the last publication).
        self.history: tuple[Any, ...] = ()
        self.candles_seen = 0  # the engine's candles_closed when ``history`` was copied
        self.last_trade: Any = None  # the newest ccxt trade dict already emitted (identity)
        self.last_bbo: Any = None  # the newest ccxt bid/ask dict already emitted (identity)
        #: Second line of defence against a trade delivered twice (None where the venue's ids do not increase).
        self.trade_ids = TradeIdGuard() if has_increasing_trade_ids(exchange) else None
        self.dup_logged_mono_s = -1e18
        self.local_ts_us = 0
        self.seq = 0
        #: The pair's recent trades for Freqtrade's order-flow columns (None: not kept; see ``trade_tape.py``).
        self.trade_tape: TradeTape | None = None
        #: Event time (µs) of the next engine checkpoint (0: not set yet); see ``Publisher._maybe_checkpoint``.
        self.next_checkpoint_us = 0
        #: The engine continues a recorded session (``warmup.py``): the feed declares the restart as a gap first.
        self.warmed = False


class Publisher:
    """The event and publication half of the feed thread's ``Runner`` (which subclasses it). Runs on the feed
    thread only."""

    #: Engine checkpoints (``recording/checkpoints.py``): every this many µs of event time (0 = never), under
    #: this settings fingerprint; set by the Feed.
    checkpoint_every_us: int = 0
    fingerprint: str = ""

    exchange_id: str
    pairs: dict[str, Pair]
    state: SharedState
    stats: FeedStats
    recorder: Recorder | None
    clock: Callable[[], float]
    loop: asyncio.AbstractEventLoop | None
    _dirty: dict[str, Pair]
    _unsettled: dict[str, Pair]
    _last_us: int

    def _now_us(self) -> int:
        """Receive time in wall-clock µs, never decreasing (a clock step back is held flat, as recordings
        require)."""
        t = time.time_ns() // 1000
        if t < self._last_us:
            t = self._last_us
        self._last_us = t
        return t

    # ---- events out ---------------------------------------------------------------------------------------------

    def _failed(self, group: Iterable[Pair], kind: str, message: str, *, book: bool) -> None:
        local = self._now_us()
        for p in group:
            log.warning("%s %s: %s (%s)", self.exchange_id, p.symbol, message, kind)
            p.health.on_error(kind, message, book=book)
            self._gap(p, f"{kind}: {message}", local)
            self._publish(p)

    def _gap(self, p: Pair, reason: str, local: int) -> None:
        """Declare lost data. The engine then waits for a book snapshot, so the next book observation is
        one (even when only trades were lost)."""
        self.stats.gaps += 1
        p.differ.reset()
        self._emit(p, FeedGap(self.exchange_id, p.symbol, local, local, reason))

    def _emit(self, p: Pair, event: Event) -> None:
        """One event to the pair's engine and the recorder, in that single order."""
        stats = self.stats
        stats.events += 1
        stats.by_symbol[p.symbol] += 1
        kind = type(event)
        if kind is Trade:
            stats.trades += 1
            if p.trade_tape is not None:
                p.trade_tape.append(event)  # type: ignore[arg-type]
        elif kind is BookSnapshot:
            stats.book_snapshots += 1
        elif kind is BestBidOffer:
            stats.bbo += 1
        elif kind is not FeedGap:
            stats.book_deltas += 1
        p.local_ts_us = event.local_ts_us
        if self.recorder is not None:
            self.recorder.put(event)
        engine = p.engine
        if engine is not None and not p.engine_broken:
            try:
                engine.on_event(event)
            except Exception:
                # The engine is deterministic: after an exception its state no longer matches what a
                # replay of the recording would give, so it is not fed again (recording goes on).
                stats.engine_errors += 1
                p.engine_broken = True
                p.health.on_error("error", f"engine failed on {kind.__name__}; order-flow state frozen", book=False)
                log.exception("%s: the engine failed; its state is frozen (the recording goes on)", p.symbol)

    def _publish_soon(self, p: Pair) -> None:
        """Publish ``p`` once the frames at hand are handled: ccxt handles every frame of a socket read in
        one go, and a read at a busy moment brings dozens (every pair's trades and quotes of the same
        instant), so each pair is published once per read instead of once per frame. Books are published at
        once (``_publish``): they are what a callback reads first."""
        dirty = self._dirty
        if not dirty:
            loop = self.loop
            if loop is None:
                self._publish(p)
                return
            loop.call_soon(self._publish_dirty)
        dirty[p.symbol] = p

    def _publish_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for p in dirty.values():
            try:
                self._publish(p)
            except Exception:
                log.exception("%s: publishing failed", p.symbol)

    def _settle_soon(self, p: Pair) -> None:
        """Have the pair's engine do its deferred timer work (heatmap column, wall scan) once the frames
        at hand are handled, then publish again. Every pair's timers fall due in the same socket read; done
        inline, the last pair's book would wait for all of them."""
        if not self._unsettled:
            loop = self.loop
            if loop is None:
                self._unsettled[p.symbol] = p
                while self._unsettled:
                    self._settle_next()
                return
            loop.call_soon(self._settle_next)
        self._unsettled[p.symbol] = p

    def _settle_next(self) -> None:
        """Settle one pair, then yield to the loop before the next: frames read meanwhile (and the trades
        waiting for ``_publish_dirty``) wait for one pair's timer work at most, not for every pair's."""
        if not self._unsettled:
            return
        symbol = next(iter(self._unsettled))
        p = self._unsettled.pop(symbol)
        if self._unsettled and self.loop is not None:
            self.loop.call_soon(self._settle_next)
        engine = p.engine
        if engine is None or p.engine_broken or not engine.unsettled:
            return  # settled already (a trade or the next timers did it) and published since
        try:
            engine.settle()
        except Exception:
            self.stats.engine_errors += 1
            p.engine_broken = True
            p.health.on_error("error", "engine failed in its timer work; order-flow state frozen", book=False)
            log.exception("%s: the engine failed; its state is frozen (the recording goes on)", p.symbol)
        try:
            self._publish(p)
        except Exception:
            log.exception("%s: publishing failed", p.symbol)

    def _publish(self, p: Pair) -> None:
        """Swap in a new immutable snapshot of the pair."""
        self._dirty.pop(p.symbol, None)
        if self.pairs.get(p.symbol) is not p:
            return  # the pair left the feed (work scheduled before it left)
        engine_state = None
        if p.engine is not None:
            try:
                engine_state = p.engine.snapshot()
            except Exception:
                self.stats.engine_errors += 1
                log.exception("%s: engine snapshot failed", p.symbol)
                engine_state = self.state.get(p.symbol).engine  # type: ignore[union-attr]
            _update_history(p)
            if self.checkpoint_every_us:
                self._maybe_checkpoint(p)
            if p.engine_broken:
                p.health.on_engine_failed()
            elif engine_state is not None:
                p.health.on_engine(engine_state.health.book_ok)
        recorder = self.recorder
        if recorder is not None:  # a paused (disk full) or stopped recording: a warning, or unhealthy if required
            was, problem = p.health.recording_problem, recorder.problem
            p.health.on_recording(problem, recorder.required)
            if was is not None and problem is None:
                # Recording resumed after a pause: a gap to the engine and the recording alike, and the next
                # book observation is a snapshot, so a replay's book is whole again from here (as live).
                self._gap(p, "recording resumed after a pause", self._now_us())
        p.seq += 1
        self.stats.publications += 1
        d = p.differ
        self.state.publish(
            PairSnapshot(
                exchange=self.exchange_id,
                symbol=p.symbol,
                health=p.health.snapshot(),
                engine=engine_state,
                history=p.history,
                best_bid=d.best_bid(),
                best_ask=d.best_ask(),
                local_ts_us=p.local_ts_us,
                published_mono_s=self.clock(),
                seq=p.seq,
            )
        )


    def _maybe_checkpoint(self, p: Pair) -> None:
        """Save the pair's engine when its event time has passed the next multiple of ``checkpoint_every_us``."""
        engine = p.engine
        if engine is None or p.engine_broken or self.recorder is None:
            return
        now = engine.clock_us
        if now < p.next_checkpoint_us:
            return
        due = p.next_checkpoint_us != 0
        p.next_checkpoint_us = (now // self.checkpoint_every_us + 1) * self.checkpoint_every_us
        if due:
            self._checkpoint(p)

    def _checkpoint(self, p: Pair) -> None:
        """Hand the pair's engine, as it stands after every event emitted so far, to the recorder (which writes
        it once those events are on disk)."""
        engine = p.engine
        if engine is None or p.engine_broken or self.recorder is None or engine.events == 0:
            return
        try:
            blob = settled_blob(engine)
        except Exception:  # a missed checkpoint only makes the next restart replay more
            log.exception("%s: the engine could not be checkpointed", p.symbol)
            return
        self.recorder.checkpoint(self.exchange_id, p.symbol, blob, self.fingerprint, engine.clock_us)


def _update_history(p: Pair) -> None:
    """Copy the engine's bounded candle history for publication when a candle has closed since the last copy
    (this runs on the feed thread, which owns the engine)."""
    engine = p.engine
    if engine is not None and engine.candles_closed != p.candles_seen:
        p.candles_seen = engine.candles_closed
        p.history = tuple(engine.history)
