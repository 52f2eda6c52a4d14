"""Trade ids: which venues number each pair's trades in increasing order, and the guard that lets no trade
through twice.

A venue's trade id names one trade, so a second trade with an id already seen is the same trade delivered
again (a re-sent frame, a second connection to the same stream, a recording read twice), and counting it
would move CVD, VWAP, delta and the absorption fractions. Where a venue's ids increase, a trade whose id is
not above the last one let through was either seen already or arrives out of order; neither may be counted.
The live feed drops such trades before they are recorded or reach the engine, and the engine drops them
again (recordings made before this guard, imports), each counting what it dropped.

Venues whose ids increase per pair (``INCREASING_TRADE_IDS``, by ccxt id), checked on the captures in
``../shared/data``: Binance (spot, US, USD-M and COIN-M futures: ``t``, one counter per symbol, no gap in the
hftbacktest capture), OKX (``tradeId``, one counter per instrument) and Gate.io (``id``, one counter for the
whole venue, so increasing per pair). Not guarded: KuCoin (``tradeId`` is a hex object id), Bybit v5 (``i``
is a UUID on derivatives), Kraken (websocket v1 trades carry no id), and every venue not named.

A restart of the numbering is not a duplicate: when an id is not above the last one but the trade's venue
time is later than that trade's, the venue (in practice the local exchange, restarted) numbers again from a
lower value, and the guard follows it. A duplicate carries its original's time, never a later one.
"""

from __future__ import annotations

from collections import deque

#: ccxt ids of the venues whose trade ids increase per pair (see the module docstring for the evidence).
INCREASING_TRADE_IDS: frozenset[str] = frozenset(
    {"binance", "binanceus", "binanceusdm", "binancecoinm", "okx", "gate", "gateio"}
)


def has_increasing_trade_ids(exchange: str) -> bool:
    """Whether ``exchange`` (ccxt id) numbers each pair's trades in increasing order."""
    return exchange in INCREASING_TRADE_IDS


class TradeIdGuard:
    """One pair's guard: ``admit(trade_id, ts_us)`` is False for a trade that must not be counted.

    Only for a venue with increasing ids (``has_increasing_trade_ids``). An id that is not an integer is
    admitted (the venue gave none). ``dropped`` counts the trades refused.
    """

    __slots__ = ("dropped", "last_id", "last_ts_us")

    def __init__(self) -> None:
        self.last_id = -1
        self.last_ts_us = -1
        self.dropped = 0

    def admit(self, trade_id: str, ts_us: int) -> bool:
        try:
            tid = int(trade_id)
        except ValueError:
            return True
        if tid <= self.last_id and ts_us <= self.last_ts_us:
            self.dropped += 1
            return False
        self.last_id = tid
        if ts_us > self.last_ts_us:
            self.last_ts_us = ts_us
        return True


class TradeIdAudit:
    """Counts, for ``helios inspect``, trades whose id was seen before (``duplicates``) and trades whose id is
    below the largest seen but new (``out_of_order``), for any venue whose ids are integers.

    Ids are remembered for the last ``window`` trades (memory stays bounded on months of data): a repeat of
    an older trade counts as out of order. A numbering restart (see the module docstring) starts afresh and
    is counted in ``restarts``. ``first_duplicate`` describes the first duplicate for the report.
    """

    __slots__ = ("_order", "_seen", "duplicates", "first_duplicate", "last_ts_us", "max_id", "out_of_order",
                 "restarts", "window")

    def __init__(self, window: int = 200_000) -> None:
        self.window = window
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self.max_id = -1
        self.last_ts_us = -1
        self.duplicates = 0
        self.out_of_order = 0
        self.restarts = 0
        self.first_duplicate = ""

    def add(self, trade_id: str, ts_us: int) -> None:
        try:
            tid = int(trade_id)
        except ValueError:
            return
        if tid <= self.max_id:
            if tid in self._seen:
                self.duplicates += 1
                if not self.first_duplicate:
                    self.first_duplicate = f"id {tid} again after {self.max_id}"
                return
            if ts_us > self.last_ts_us:  # the numbering restarted
                self.restarts += 1
                self._seen.clear()
                self._order.clear()
                self.max_id = tid
            else:
                self.out_of_order += 1
        else:
            self.max_id = tid
        self.last_ts_us = max(self.last_ts_us, ts_us)
        self._seen.add(tid)
        self._order.append(tid)
        if len(self._order) > self.window:
            self._seen.discard(self._order.popleft())
