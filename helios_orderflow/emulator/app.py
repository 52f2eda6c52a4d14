"""What the local exchange's REST and websocket handlers share: the market, its clock, the fault plan and the
server's log (``MarketApp``), reached from a request as ``request.app[APP_KEY]``.

The handlers (``rest.py``, ``ws.py``) and the server (``server.py``, which drives the market and serves the
handlers) all depend on this module, and it on none of them: ``server -> rest, ws -> app``.

Time: simulated time = wall-clock time minus the total time the market was frozen (``freeze``/``resume``,
for tests and the soak's end).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from helios_orderflow.emulator.faults import FaultPlan
from helios_orderflow.emulator.instruments import Instrument
from helios_orderflow.emulator.market import MarketState

#: Levels as (price_units, qty_units), best first.
UnitLevels = list[tuple[int, int]]
#: A REST depth snapshot: (lastUpdateId, bids, asks).
DepthSnapshot = tuple[int, UnitLevels, UnitLevels]
#: The ``stale`` fault answers REST depth requests with a snapshot at least this old (simulated µs).
STALE_AGE_US = 2_000_000
#: ... taken from a history of snapshots kept once a (simulated) second, this many deep.
STALE_HISTORY = 6


def _binance_wire(inst: Instrument) -> str:
    return inst.wire


class MarketSource(Protocol):
    """What drives the books: the synthetic model or a recording replay."""

    origin_us: int
    states: list[MarketState]

    def advance(self, until_us: int) -> None:
        """Write every change with time < ``until_us`` into ``states`` (the server flushes them)."""


@dataclass
class ServerLog:
    """What the server sent, for tests to compare against what a client built."""

    ws_connections: int = 0
    rest_requests: int = 0
    #: REST requests by path (``/api/v3/depth`` counts snapshot fetches, i.e. client resyncs)
    rest_by_path: dict[str, int] = field(default_factory=dict)
    diffs_published: int = 0
    trades_published: int = 0
    disconnects: int = 0
    kline_messages: int = 0
    #: stream name -> SUBSCRIBE count (by any client)
    subscriptions: dict[str, int] = field(default_factory=dict)
    #: symbol -> every trade id published, in order -> its amount in base units as a float (only with
    #: ``record=True``)
    trade_amounts: dict[str, dict[int, float]] = field(default_factory=dict)
    #: symbol -> last update id -> (bids, asks) top ``record_depth`` as floats (only with ``record=True``)
    books: dict[str, dict[int, tuple[list[list[float]], list[list[float]]]]] = field(default_factory=dict)


def dumps(obj: object) -> str:
    """Compact JSON, as Binance sends it."""
    return json.dumps(obj, separators=(",", ":"))


class MarketApp:
    """The market as the handlers see it: symbols by wire name, the simulated clock, the fault plan, the
    stale-snapshot history the ``stale`` fault serves from, and the log of what was served.

    ``wire``: the venue's name of an instrument (the dialect's), by which requests name symbols.

    ``faults``: an empty plan is kept as given (it is falsy), so a caller can switch faults on later.
    """

    def __init__(self, source: MarketSource, faults: FaultPlan | None = None, ping_interval_s: float = 20.0,
                 wire: Callable[[Instrument], str] | None = None) -> None:
        self.source = source
        self.faults = faults if faults is not None else FaultPlan()
        self.ping_interval_s = ping_interval_s
        self.log = ServerLog()
        self._by_wire: dict[tuple[str, str], MarketState] = {
            (st.inst.market, (wire or _binance_wire)(st.inst)): st for st in source.states
        }
        self._offset_us = 0  # wall - simulated
        self._frozen_at: float | None = None
        self._started_wall = time.time()
        self._stale: dict[str, deque[tuple[int, DepthSnapshot]]] = {}

    # ---- time ----------------------------------------------------------------------------------
    def now_us(self) -> int:
        wall = self._frozen_at if self._frozen_at is not None else time.time()
        return int(wall * 1e6) - self._offset_us

    def now_ms(self) -> int:
        return self.now_us() // 1000

    def elapsed_s(self) -> float:
        """Wall seconds since the server started (faults count ``after_s`` from here)."""
        return time.time() - self._started_wall

    def start_clock(self) -> None:
        """Count ``elapsed_s`` (and so the faults' ``after_s``) from now: the server calls it once listening."""
        self._started_wall = time.time()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def freeze(self) -> None:
        """Stop the market (no more changes) until ``resume``; REST and websockets keep serving."""
        if self._frozen_at is None:
            self._frozen_at = time.time()

    def resume(self) -> None:
        if self._frozen_at is not None:
            self._offset_us += int((time.time() - self._frozen_at) * 1e6)
            self._frozen_at = None

    # ---- lookups -------------------------------------------------------------------------------
    def state_by_wire(self, market: str, wire: str) -> MarketState | None:
        return self._by_wire.get((market, wire))

    def states_of(self, market: str) -> list[MarketState]:
        return [s for s in self.source.states if s.inst.market == market]

    def state(self, symbol: str) -> MarketState:
        for s in self.source.states:
            if s.inst.symbol == symbol:
                return s
        raise KeyError(f"symbol {symbol!r} is not listed; listed: {[s.inst.symbol for s in self.source.states]}")

    # ---- faults the handlers apply ---------------------------------------------------------------
    def noping_active(self, opened_monotonic_s: float) -> bool:
        """Whether a websocket opened at ``opened_monotonic_s`` (``time.monotonic``) goes without pongs and
        pings now (the ``noping`` fault)."""
        return bool(self.faults.noping_s) and self.elapsed_s() >= self.faults.after_s and (
            time.monotonic() - opened_monotonic_s >= self.faults.noping_s)

    def depth_snapshot(self, st: MarketState, limit: int) -> DepthSnapshot:
        """The REST depth snapshot of ``st``'s top ``limit`` levels; with the ``stale`` fault firing, one at
        least ``STALE_AGE_US`` old."""
        hist = self._stale.get(st.inst.symbol)
        if hist and self.faults.fires("stale", f"depth:{st.inst.symbol}", self.elapsed_s()):
            now = self.now_us()
            for t_us, snap in hist:  # oldest first
                if now - t_us >= STALE_AGE_US:
                    return snap[0], snap[1][:limit], snap[2][:limit]
        bids, asks = st.top(limit)
        return st.last_update_id, bids, asks

    def remember_snapshot(self, st: MarketState, t_us: int) -> None:
        """Keep ``st``'s book at ``t_us`` for the ``stale`` fault (at most one a second, newest last)."""
        hist = self._stale.setdefault(st.inst.symbol, deque(maxlen=STALE_HISTORY))
        if not hist or t_us - hist[-1][0] >= 1_000_000:
            bids, asks = st.top(1000)
            hist.append((t_us, (st.last_update_id, bids, asks)))


#: The ``MarketApp`` (the server) serving a request: ``request.app[APP_KEY]``.
APP_KEY: web.AppKey[MarketApp] = web.AppKey("helios_exchange_app", MarketApp)
