"""Per-pair feed health: counters the feed thread keeps, and the ``healthy`` verdict readers compute.

The feed thread owns one ``HealthTracker`` per pair and, whenever something changes, publishes an
immutable ``PairHealth`` inside the pair's snapshot. Times are ``time.monotonic()`` seconds of the feed's
clock; the age of the last book update is computed **at read time** from the reader's clock (which
``SharedState`` injects), so a feed that stops publishing still ages.

A pair is healthy when all of these hold (thresholds in ``HealthSettings``):

1. ``has_book``: a book snapshot has been received since the feed started;
2. ``in_sync``: the book stream is not failed or resyncing (a watch call raised and the book has not been
   received again since);
3. fresh: the last book update is at most ``stale_after_s`` old (default 5 s);
4. not crossed: the last observed book has best bid < best ask;
5. ``engine_book_ok``: the pair's engine holds a usable book (in sync with the venue's sequence, both sides
   present, not crossed; ``BookHealth.book_ok`` of its state). True when the feed runs without an engine;
6. not ``engine_failed``: the engine has not raised (after an exception its state is frozen, since it would no
   longer equal a replay of the recording; walls and signals from it must not be traded on);
7. with ``recording.required`` only: the feed's events are being recorded (``recording_problem`` is None).

This is the one health record a reader checks: the feed folds the engine's verdict into it at every
publication, so ``SharedState.is_healthy`` answers for both the connection and the engine's book.

Trades and best bid/offer streams are not part of the verdict: a quiet market trades rarely, and a book
that updates is what entries and stops are priced from.

Counters (since the feed was created):

- ``book_updates``: book observations that changed the book (snapshots included); ``trades``; ``bbo``.
- ``resyncs``: book snapshots after the first (the book was rebuilt from a fresh snapshot).
- ``gaps``: the venue's sequence broke (ccxt raised ``InvalidNonce``/``ChecksumError``); ccxt then
  resubscribes and re-snapshots: a resync follows.
- ``reconnects``: a watch call failed with a network error (connection lost, ping timeout, REST snapshot
  refused with 429/5xx) and the loop retried after backoff.
- ``crossed_books``: times the observed book went from not crossed to crossed.
- ``duplicate_trades``: trades the venue delivered again (an id already emitted, on a venue whose trade ids
  increase: ``trade_ids.py``), dropped before the recording and the engine. Not part of the verdict: the
  book is unaffected and nothing was counted twice, but it should stay 0; a warning is logged when it grows.
- ``limits``: what the venue's feed cannot do here, said once each, for example "no best bid/offer stream"
  or "trades carry no ids". Not part of the verdict: the feed degrades (it records what it has and invents
  nothing), and ``docs/venues.md`` says per venue what it costs.
- ``recording_problem``: why the feed's events are not being recorded now (the recorder's ``problem``: paused on a
  full disk, or stopped after an error), None while recording works or when not recording. A warning
  (``warnings``), not part of the verdict: trading decisions go on. With ``recording.required``
  (``recording_required``) it is part of the verdict: the pair is unhealthy until recording resumes.
- ``errors``: every exception a watch loop caught (gaps and reconnects included); ``last_error`` is the
  newest, as ``"ExceptionType: message"``, with ``last_error_mono_s``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from helios_orderflow.core.settings import HealthSettings


@dataclass(frozen=True, slots=True)
class PairHealth:
    """One pair's health as of its publication (see module doc for each field)."""

    exchange: str
    symbol: str
    has_book: bool = False
    in_sync: bool = False
    crossed: bool = False
    last_book_mono_s: float | None = None
    last_trade_mono_s: float | None = None
    book_updates: int = 0
    trades: int = 0
    bbo: int = 0
    resyncs: int = 0
    gaps: int = 0
    reconnects: int = 0
    crossed_books: int = 0
    duplicate_trades: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_mono_s: float | None = None
    engine_book_ok: bool = True
    engine_failed: bool = False
    limits: tuple[str, ...] = ()
    recording_problem: str | None = None
    recording_required: bool = False

    def age_s(self, now_mono_s: float) -> float:
        """Seconds since the last book update at ``now_mono_s`` (monotonic), ``inf`` when there was none."""
        if self.last_book_mono_s is None:
            return math.inf
        return max(0.0, now_mono_s - self.last_book_mono_s)

    def problems(self, now_mono_s: float, settings: HealthSettings) -> tuple[str, ...]:
        """Why the pair is not healthy at ``now_mono_s``; empty when it is."""
        out: list[str] = []
        if not self.has_book:
            out.append("no book received yet" + (f" (last error: {self.last_error})" if self.last_error else ""))
        elif not self.in_sync:
            out.append(f"book resyncing after: {self.last_error or 'resubscription'}")
        age = self.age_s(now_mono_s)
        if self.has_book and age > settings.stale_after_s:
            out.append(f"stale: no book update for {age:.1f} s (limit {settings.stale_after_s:g} s)")
        if self.crossed:
            out.append("crossed book: best bid >= best ask")
        if self.engine_failed:
            out.append("the order-flow engine failed and its state is frozen (see the log; restart the bot)")
        elif self.has_book and self.in_sync and not self.engine_book_ok:
            out.append("the engine's book is not usable yet (waiting for a snapshot after a gap, a side empty, "
                       "or crossed)")
        if self.recording_problem is not None and self.recording_required:
            out.append(f"{self.recording_problem} (recording.required is true: no trading until it records again)")
        return tuple(out)

    def warnings(self) -> tuple[str, ...]:
        """What is wrong without making the pair unhealthy (empty when nothing is): recording paused or
        stopped while ``recording.required`` is false."""
        if self.recording_problem is not None and not self.recording_required:
            return (f"{self.recording_problem} (trading goes on: recording.required is false)",)
        return ()

    def is_healthy(self, now_mono_s: float, settings: HealthSettings) -> bool:
        """The ``healthy`` flag at ``now_mono_s`` (see module doc for the conditions)."""
        return (
            self.has_book
            and self.in_sync
            and not self.crossed
            and self.engine_book_ok
            and not self.engine_failed
            and not (self.recording_problem is not None and self.recording_required)
            and self.last_book_mono_s is not None
            and now_mono_s - self.last_book_mono_s <= settings.stale_after_s
        )


class HealthTracker:
    """The feed thread's mutable counters for one pair; ``snapshot()`` freezes them into a PairHealth.

    ``clock``: monotonic seconds (``time.monotonic`` in the feed). Not thread-safe: only the feed thread
    touches a tracker; readers only see the PairHealth snapshots it makes.
    """

    __slots__ = (
        "bbo",
        "book_updates",
        "crossed",
        "crossed_books",
        "duplicate_trades",
        "engine_book_ok",
        "engine_failed",
        "errors",
        "exchange",
        "gaps",
        "has_book",
        "in_sync",
        "last_book_mono_s",
        "last_error",
        "last_error_mono_s",
        "last_trade_mono_s",
        "limits",
        "reconnects",
        "recording_problem",
        "recording_required",
        "resyncs",
        "symbol",
        "trades",
        "_clock",
        "_snapshot",
    )

    def __init__(self, exchange: str, symbol: str, clock: Callable[[], float]) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self._clock = clock
        self.has_book = False
        self.in_sync = False
        self.crossed = False
        self.last_book_mono_s: float | None = None
        self.last_trade_mono_s: float | None = None
        self.book_updates = 0
        self.trades = 0
        self.bbo = 0
        self.resyncs = 0
        self.gaps = 0
        self.reconnects = 0
        self.crossed_books = 0
        self.duplicate_trades = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_error_mono_s: float | None = None
        self.engine_book_ok = True
        self.engine_failed = False
        self.limits: tuple[str, ...] = ()
        self.recording_problem: str | None = None
        self.recording_required = False
        self._snapshot: PairHealth | None = None

    def on_book(self, *, snapshot: bool, crossed: bool, changed: bool = True) -> None:
        """A book observation: ``snapshot`` when it (re)started the book, ``crossed`` as observed,
        ``changed`` False when no level changed (the book is still alive: freshness counts it)."""
        if snapshot:
            if self.has_book:
                self.resyncs += 1
            self.has_book = True
        self.in_sync = True
        if crossed and not self.crossed:
            self.crossed_books += 1
        self.crossed = crossed
        if changed:
            self.book_updates += 1
        self.last_book_mono_s = self._clock()
        self._snapshot = None

    def on_trades(self, n: int) -> None:
        self.trades += n
        self.last_trade_mono_s = self._clock()
        self._snapshot = None

    def on_duplicate_trades(self, n: int) -> None:
        self.duplicate_trades += n
        self._snapshot = None

    def on_engine(self, book_ok: bool) -> None:
        """The engine's verdict on its own book, at a publication."""
        if book_ok != self.engine_book_ok:
            self.engine_book_ok = book_ok
            self._snapshot = None

    def on_engine_failed(self) -> None:
        """The engine raised: its state is frozen for good (the pair stays unhealthy)."""
        if not self.engine_failed:
            self.engine_failed = True
            self._snapshot = None

    def on_limit(self, text: str) -> None:
        """The venue's feed cannot do something here (said once)."""
        if text not in self.limits:
            self.limits = (*self.limits, text)
            self._snapshot = None

    def on_recording(self, problem: str | None, required: bool) -> None:
        """The recorder's state at a publication (``Recorder.problem``, ``recording.required``)."""
        if problem != self.recording_problem or required != self.recording_required:
            self.recording_problem = problem
            self.recording_required = required
            self._snapshot = None

    def on_bbo(self) -> None:
        self.bbo += 1
        self._snapshot = None

    def on_error(self, kind: str, message: str, *, book: bool) -> None:
        """A caught exception. ``kind``: "gap", "reconnect" or "error"; ``book``: it came from the book
        stream (the book is then out of sync until observed again)."""
        self.errors += 1
        if kind == "gap":
            self.gaps += 1
        elif kind == "reconnect":
            self.reconnects += 1
        self.last_error = message
        self.last_error_mono_s = self._clock()
        if book:
            self.in_sync = False
        self._snapshot = None

    def snapshot(self) -> PairHealth:
        """The current counters as an immutable PairHealth (cached until something changes)."""
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = PairHealth(
                exchange=self.exchange,
                symbol=self.symbol,
                has_book=self.has_book,
                in_sync=self.in_sync,
                crossed=self.crossed,
                last_book_mono_s=self.last_book_mono_s,
                last_trade_mono_s=self.last_trade_mono_s,
                book_updates=self.book_updates,
                trades=self.trades,
                bbo=self.bbo,
                resyncs=self.resyncs,
                gaps=self.gaps,
                reconnects=self.reconnects,
                crossed_books=self.crossed_books,
                duplicate_trades=self.duplicate_trades,
                errors=self.errors,
                last_error=self.last_error,
                last_error_mono_s=self.last_error_mono_s,
                engine_book_ok=self.engine_book_ok,
                engine_failed=self.engine_failed,
                limits=self.limits,
                recording_problem=self.recording_problem,
                recording_required=self.recording_required,
            )
        return snap
