"""Where the page's data comes from: a recording replayed through the engine, or the live SharedState.

``DashboardSource`` is what ``app.create_app`` needs. Both implementations own one background thread that
turns engine state into per-pair ``PairHistory`` (bounded) and never block the web server:

- ``RecordingSource(root)``: replays every stream of a Helios recording (``recording.reader.read_events``)
  through one ``PairEngine`` per (exchange, symbol), as fast as it can or at ``pace`` x event time (a
  replay that behaves like a live feed). History columns are widened for long recordings so the whole
  recording fits in ``history_columns`` (the time-range control scrubs all of it).
- ``SharedStateSource(state)``: polls the live feed's ``SharedState`` every ``poll_s`` seconds for candles,
  walls, signals and health; its heatmap is the engine's own, as published (``PairState.heatmap.since``
  reads the engine's ring): the page keeps no copy and loses no column, however slowly it polls.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from helios_orderflow.core.errors import HeliosError
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine
from helios_orderflow.recording.reader import list_streams, read_events, stream_span

from .bot_trades import BotTrade, freqtrade_trades
from .history import PairHistory
from .settings import DashboardSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Health:
    """The banner: ``level`` "ok", "warn" or "bad", and one line of text."""

    level: str
    text: str


class DashboardSource(Protocol):
    """What the page reads. Pair keys are ``"<exchange> <symbol>"`` (e.g. ``"binance BTC/USDT"``)."""

    #: Data may still arrive (live feed, or a replay in progress): the page polls for appends.
    @property
    def live(self) -> bool: ...

    def pairs(self) -> list[str]: ...

    def history(self, pair: str) -> PairHistory | None: ...

    def health(self, pair: str) -> Health: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def pair_key(exchange: str, symbol: str) -> str:
    return f"{exchange} {symbol}"


def _column_us(interval_us: int, span_us: float, capacity: int) -> int:
    """History column width: a multiple of the engine's interval such that ``span_us`` fits ``capacity``."""
    k = max(1, math.ceil(span_us / (interval_us * capacity)))
    return interval_us * k


class _EngineFeed:
    """Copies one engine's new heatmap columns and state into a PairHistory (shared by both sources)."""

    def __init__(self, exchange: str, symbol: str, column_us_for: Any, capacity: int,
                 sample_us: int | None = None, *, live: bool = False) -> None:
        """``live``: the history reads the engine's own heatmap (``EngineColumns``); else columns are merged
        into ``capacity`` columns of ``column_us_for()`` (a replay)."""
        self._live = live
        self.exchange = exchange
        self._sample_us = sample_us
        self.symbol = symbol
        self.history: PairHistory | None = None
        self.last_seq = 0
        self.missed_columns = 0
        self._column_us_for = column_us_for
        self._capacity = capacity

    def take(self, state: Any, candles: Iterable[Any], timeframe: str) -> None:
        cols = state.heatmap if state is not None else None
        if cols is not None and cols.seq > self.last_seq:
            if self.history is None:
                if self._live:
                    self.history = PairHistory.of_engine(self.exchange, self.symbol, cols,
                                                         self._sample_us or self._column_us_for())
                else:
                    self.history = PairHistory(self.exchange, self.symbol, cols.bin_size, cols.half_bins,
                                               self._column_us_for(), self._capacity, sample_us=self._sample_us)
            if self._live:
                self.history.add_engine_columns(cols)  # the engine's ring, read where it is
            else:
                new = cols.since(self.last_seq)
                if new is not None:
                    self.missed_columns += new.first_seq - self.last_seq - 1
                    self.history.add_engine_columns(new)
            self.last_seq = cols.seq
        if self.history is not None:
            self.history.set_state(state, tuple(candles), timeframe)


def _book_health_text(state: Any) -> Health:
    if state is None:
        return Health("warn", "no data yet")
    h = state.health
    counts = f"gaps {h.gaps} · feed gaps {h.feed_gaps} · crossed {h.crossed} · snapshots {h.snapshots}"
    if h.duplicate_trades:  # a recording made before the feed's guard: the engine counted them once
        counts += f" · trades recorded twice, counted once {h.duplicate_trades}"
    if not h.in_sync:
        return Health("bad", f"RESYNCING: book out of sync ({h.last_gap or 'waiting for a snapshot'}) · {counts}")
    if not h.book_ok:
        return Health("bad", f"book unusable (empty side or crossed) · {counts}")
    if h.gaps or h.feed_gaps:
        return Health("warn", f"book in sync after gaps · {counts}")
    return Health("ok", f"book in sync · {counts}")


class RecordingSource:
    """Replays a recording (see the module docstring). ``pace``: None = as fast as possible, else event
    time runs at ``pace`` x real time (1.0 = as recorded)."""

    def __init__(
        self,
        root: str | Path,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        settings: HeliosSettings | None = None,
        dashboard: DashboardSettings | None = None,
        timeframe: str = "1m",
        pace: float | None = None,
    ) -> None:
        self.root = Path(root)
        self.settings = settings or HeliosSettings()
        self.dashboard = dashboard or DashboardSettings()
        self.timeframe = timeframe
        self.pace = pace
        streams = [s for s in list_streams(self.root)
                   if (exchange is None or s[0] == exchange) and (symbol is None or s[1] == symbol)]
        if not streams:
            have = ", ".join(f"{e} {s}" for e, s in list_streams(self.root)) or "none"
            raise HeliosError(f"recording '{self.root}' has no stream for exchange={exchange or 'any'} "
                              f"symbol={symbol or 'any'} (it has: {have})")
        self.streams = streams
        self._exchange = exchange
        self._symbol = symbol
        interval_us = self.settings.heatmap.snapshot_interval_ms * 1000
        self._feeds: dict[str, _EngineFeed] = {}
        self._engines: dict[tuple[str, str], PairEngine] = {}
        for ex, sym in streams:
            lo, hi = stream_span(self.root, ex, sym)
            col = _column_us(interval_us, hi - lo, self.dashboard.history_columns)
            self._feeds[pair_key(ex, sym)] = _EngineFeed(ex, sym, lambda c=col: c, self.dashboard.history_columns)
            self._engines[(ex, sym)] = PairEngine(ex, sym, self.settings, timeframe=timeframe)
        self.events = 0
        self.error: str | None = None
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def live(self) -> bool:
        return not self._done.is_set()

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def pairs(self) -> list[str]:
        return list(self._feeds)

    def history(self, pair: str) -> PairHistory | None:
        f = self._feeds.get(pair)
        return None if f is None else f.history

    def health(self, pair: str) -> Health:
        f = self._feeds.get(pair)
        if f is None:
            return Health("bad", f"{pair} is not in this recording")
        state = f.history.state if f.history is not None else None
        base = _book_health_text(state)
        if self.error:
            return Health("bad", f"replay failed: {self.error}")
        where = "replay done" if self.finished else f"replaying ({self.events:,} events)"
        return Health(base.level, f"{where} · {base.text}")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="helios-dashboard-replay", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the replay has finished (True) or ``timeout`` seconds passed (False)."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        try:
            self._replay()
        except Exception as exc:  # the page shows it; the web server keeps running
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("dashboard replay of %s failed", self.root)
        finally:
            for key, f in self._feeds.items():
                eng = self._engines[(f.exchange, f.symbol)]
                f.take(eng.snapshot(), eng.history, self.timeframe)
                if f.history is not None:
                    f.history.flush()
                del key
            self._done.set()

    def _replay(self) -> None:
        engines = self._engines
        feeds = {(f.exchange, f.symbol): f for f in self._feeds.values()}
        seqs = dict.fromkeys(engines, 0)
        wall0 = time.monotonic()
        ts0: int | None = None
        for ev in read_events(self.root, exchange=self._exchange, symbol=self._symbol):
            key = (ev.exchange, ev.symbol)
            eng = engines.get(key)
            if eng is None:
                continue
            eng.on_event(ev)
            self.events += 1
            hm = eng.heatmap
            if hm is not None and hm.seq != seqs[key]:
                seqs[key] = hm.seq
                feeds[key].take(eng.snapshot(), eng.history, self.timeframe)
                if self._stop.is_set():
                    return
                if self.pace:
                    ts0 = ev.ts_us if ts0 is None else ts0
                    ahead = (ev.ts_us - ts0) / 1e6 / self.pace - (time.monotonic() - wall0)
                    if ahead > 0:
                        time.sleep(min(ahead, 1.0))


class SharedStateSource:
    """The live feed's SharedState (see the module docstring)."""

    def __init__(self, state: Any, *, settings: HeliosSettings | None = None,
                 dashboard: DashboardSettings | None = None, poll_s: float = 0.25,
                 bot_trades: Callable[[str], list[BotTrade]] | None = freqtrade_trades) -> None:
        self.state = state
        self._bot_trades = bot_trades
        self._trades_cache: dict[str, tuple[float, list[BotTrade]]] = {}
        self.settings = settings or HeliosSettings()
        self.dashboard = dashboard or DashboardSettings()
        self.poll_s = poll_s
        self._feeds: dict[str, _EngineFeed] = {}
        self._follow_pairs()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def live(self) -> bool:
        return True

    def pairs(self) -> list[str]:
        return list(self._feeds)

    def history(self, pair: str) -> PairHistory | None:
        f = self._feeds.get(pair)
        return None if f is None else f.history

    def bot_trades(self, pair: str) -> list[BotTrade]:
        """The bot's entries and exits in ``pair`` (markers on the candles); read at most every 2 s (a
        database query in the bot's process)."""
        f = self._feeds.get(pair)
        if f is None or self._bot_trades is None:
            return []
        now = time.monotonic()
        hit = self._trades_cache.get(pair)
        if hit is None or now - hit[0] > 2.0:
            hit = (now, self._bot_trades(f.symbol))
            self._trades_cache[pair] = hit
        return hit[1]

    @property
    def missed_columns(self) -> int:
        return sum(f.missed_columns for f in self._feeds.values())

    def health(self, pair: str) -> Health:
        f = self._feeds.get(pair)
        if f is None:
            return Health("bad", f"{pair} is not fed")
        snap = self.state.get(f.symbol)
        problems = self.state.problems(f.symbol)
        h = snap.health if snap is not None else None
        counts = (f"resyncs {h.resyncs} · gaps {h.gaps} · reconnects {h.reconnects} · crossed {h.crossed_books}"
                  if h is not None else "")
        if h is not None and h.duplicate_trades:
            counts += f" · trades delivered twice, dropped {h.duplicate_trades}"
        if h is not None and h.limits:  # what this venue cannot give (docs/venues.md)
            counts += " · " + " · ".join(h.limits)
        if problems:
            word = "STALE" if any(p.startswith("stale") for p in problems) else "UNHEALTHY"
            return Health("bad", f"{word}: {'; '.join(problems)} · {counts}")
        age = self.state.age_s(f.symbol)
        warnings = self.state.warnings(f.symbol)  # e.g. recording paused on a full disk: trading goes on
        if warnings:
            return Health("warn", f"live · book updated {age:.1f} s ago · {'; '.join(warnings)} · {counts}")
        return Health("ok", f"live · book updated {age:.1f} s ago · {counts}")

    def _follow_pairs(self) -> None:
        """One history per pair the feed carries now (the feed follows Freqtrade's whitelist): a pair that
        joined gets one, a pair that left is dropped. The dict is swapped whole (web threads read it)."""
        symbols = self.state.symbols
        keys = [pair_key(self.state.exchange, s) for s in symbols]
        if list(self._feeds) == keys:
            return
        interval_us = self.settings.heatmap.snapshot_interval_ms * 1000
        col = _column_us(interval_us, self.dashboard.window_s * 1e6, self.dashboard.history_columns)
        self._feeds = {
            key: self._feeds.get(key) or _EngineFeed(self.state.exchange, s, lambda c=col: c,
                                                     self.dashboard.history_columns, sample_us=interval_us, live=True)
            for key, s in zip(keys, symbols, strict=True)
        }

    def poll_once(self) -> None:
        """Copy whatever the feed published since the last poll (the poller thread calls this)."""
        self._follow_pairs()
        for f in self._feeds.values():
            snap = self.state.get(f.symbol)
            if snap is None or snap.engine is None:
                continue
            state = snap.engine
            f.take(state, snap.history, getattr(state, "timeframe", "1m"))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="helios-dashboard-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll_once()
            except Exception:  # never let a bad snapshot kill the page's data
                log.exception("dashboard poll failed")


class HistorySource:
    """Fixed, already-built histories (tests, benchmarks, a saved session): nothing arrives later."""

    timeframe = "1m"

    def __init__(self, histories: Iterable[PairHistory]) -> None:
        self._hist = {pair_key(h.exchange, h.symbol): h for h in histories}

    @property
    def live(self) -> bool:
        return False

    def pairs(self) -> list[str]:
        return list(self._hist)

    def history(self, pair: str) -> PairHistory | None:
        return self._hist.get(pair)

    def health(self, pair: str) -> Health:
        return Health("ok", "static history") if pair in self._hist else Health("bad", f"{pair} unknown")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
