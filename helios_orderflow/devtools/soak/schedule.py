"""The soak's load and its fault schedule: the pairs, Binance's diff rate, and one fault kind at a time for a
few seconds, then a quiet spell, cycling through every fault of ``emulator/faults.py``."""

from __future__ import annotations

from dataclasses import dataclass

#: The ten pairs the soak trades (Binance-like filters in emulator/instruments.py).
PAIRS = ("BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT", "LTC/USDT",
         "LINK/USDT", "AVAX/USDT")
#: Binance's diff stream: one message per symbol per this many microseconds.
BINANCE_DIFF_US = 100_000
#: Seconds between two fault windows (default): long enough for the slowest recovery (backoff after REST
#: refusals, then ccxt's rate-limited snapshots for every pair).
QUIET_S = 10.0


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault kind switched on for ``duration_s``.

    ``rates``: FaultPlan rates while on (``"1/1"`` = every opportunity; ``"per_s"`` = about once per
    second per symbol at the soak's diff rate). ``noping_s``: the noping fault's connection age.
    ``disturbs``: whether the feed must notice (a duplicated diff is dropped by ccxt: nothing to notice).
    """

    kind: str
    duration_s: float
    rates: tuple[tuple[str, str], ...] = ()
    disconnect: bool = False
    noping_s: float = 0.0
    disturbs: bool = True


#: One cycle of the fault schedule, repeated until the run ends; ``QUIET_S`` between windows.
SCHEDULE: tuple[FaultWindow, ...] = (
    FaultWindow("disconnect", 1.0, disconnect=True),
    FaultWindow("drop", 2.0, (("drop", "per_s"),)),
    FaultWindow("gap", 2.0, (("gap", "per_s"),)),
    FaultWindow("malformed", 2.0, (("malformed", "per_s"),)),
    FaultWindow("rest5xx", 3.0, (("rest5xx", "1/1"), ("gap", "per_s"))),
    FaultWindow("reorder", 2.0, (("reorder", "per_s"),)),
    FaultWindow("dup", 2.0, (("dup", "per_s"),), disturbs=False),
    FaultWindow("crossed", 2.0, (("crossed", "per_s"),)),
    FaultWindow("stale", 3.0, (("stale", "1/1"), ("gap", "per_s"))),
    FaultWindow("rest429", 3.0, (("rest429", "1/1"), ("gap", "per_s"))),
    FaultWindow("noping", 0.0, noping_s=1.0),  # duration set from the feed's keepalive (see schedule())
)


def schedule(start_s: float, end_s: float, keepalive_s: float, quiet_s: float = QUIET_S
             ) -> list[tuple[float, float, FaultWindow]]:
    """The fault windows ``(on_s, off_s, window)`` between ``start_s`` and ``end_s`` (seconds from the
    exchange's start), cycling through ``SCHEDULE``, ``quiet_s`` apart; the last ends ``quiet_s`` before ``end_s``.
    A noping window lasts three keepalive periods (ccxt drops a link after two unanswered pings)."""
    out: list[tuple[float, float, FaultWindow]] = []
    t = start_s
    i = 0
    while True:
        w = SCHEDULE[i % len(SCHEDULE)]
        duration = w.duration_s if w.kind != "noping" else 3 * keepalive_s + 1
        if t + duration + quiet_s > end_s:
            return out
        out.append((t, t + duration, w))
        t += duration + quiet_s
        i += 1
