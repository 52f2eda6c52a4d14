"""Order-flow imbalance and book imbalances.

- OFI (Cont, Kukanov & Stoikov 2014, "The price impact of order book events", eq. 2): for consecutive book
  states n-1 -> n with best bid ``(Pb, qb)`` and best ask ``(Pa, qa)``::

      e_n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1 - 1{Pa_n <= Pa_n-1} qa_n + 1{Pa_n >= Pa_n-1} qa_n-1

  positive = net buying pressure (bids added or asks removed), in base units. OFI over an interval is the sum
  of ``e_n`` over the book updates (venue messages) in it.
- Multi-level OFI (Xu, Gould & Howison 2018): the same term on the m-th best bid and ask, m = 1..N; Helios
  reports the unweighted sum over m. A missing level counts as price -inf (bid) / +inf (ask) and size 0.
- Queue imbalance at the best level: ``(qb - qa) / (qb + qa)`` in [-1, 1].
- Weighted mid (Stoikov 2018, the first term of the micro-price): ``I * Pa + (1 - I) * Pb`` with
  ``I = qb / (qb + qa)``: leans toward the side with less size (the side more likely to be taken out).
- Depth imbalance: ``(B - A) / (B + A)`` where B and A are the resting sizes within mid +/- X bps.

``TopLevels`` keeps a side's best levels up to date from level changes, so the top N is known after every
message without sorting the whole side (see its docstring); the engine before its compiled book
(``book/flow_book.py``) used it, and the tests keep it as their oracle. The engine's OFI is ``ofi_term`` compiled,
summed as ``ofi_levels`` sums it (``book/flow_kernel.py``).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left

import numpy as np

from helios_orderflow.book.ofi_term import ofi_term
from helios_orderflow.book.order_book import BookSide

INF = math.inf


def ofi_levels(
    bids0: list[tuple[float, float]], asks0: list[tuple[float, float]],
    bids1: list[tuple[float, float]], asks1: list[tuple[float, float]], n: int,
) -> tuple[float, float]:
    """``(e at the best level, sum of e over the best n levels)`` between two book states (best first)."""
    best = 0.0
    total = 0.0
    nb0, na0, nb1, na1 = len(bids0), len(asks0), len(bids1), len(asks1)
    for m in range(n):
        pb0, qb0 = bids0[m] if m < nb0 else (-INF, 0.0)
        pa0, qa0 = asks0[m] if m < na0 else (INF, 0.0)
        pb1, qb1 = bids1[m] if m < nb1 else (-INF, 0.0)
        pa1, qa1 = asks1[m] if m < na1 else (INF, 0.0)
        e = ofi_term(pb0, qb0, pa0, qa0, pb1, qb1, pa1, qa1)
        if m == 0:
            best = e
        total += e
    return best, total


def queue_imbalance(bid_size: float, ask_size: float) -> float:
    s = bid_size + ask_size
    return (bid_size - ask_size) / s if s > 0 else math.nan


def weighted_mid(bid: float, bid_size: float, ask: float, ask_size: float) -> float:
    s = bid_size + ask_size
    if s <= 0:
        return (bid + ask) / 2.0
    i = bid_size / s
    return i * ask + (1.0 - i) * bid


def depth_imbalance(
    bid_prices: np.ndarray, bid_sizes: np.ndarray, ask_prices: np.ndarray, ask_sizes: np.ndarray,
    mid: float, bps: float,
) -> float:
    """``(B - A) / (B + A)`` over levels within ``mid * (1 -/+ bps / 1e4)``; NaN when both are empty. Prices
    ascending, as the engine's arrays."""
    lo = mid * (1.0 - bps * 1e-4)
    hi = mid * (1.0 + bps * 1e-4)
    # Ascending prices: the bids >= lo are the last ones, the asks <= hi the first ones (a slice sums the same
    # values in the same order as a masked copy, so the same bits).
    b = float(bid_sizes[bid_prices.searchsorted(lo):].sum())
    a = float(ask_sizes[:ask_prices.searchsorted(hi, "right")].sum())
    s = b + a
    return (b - a) / s if s > 0 else math.nan


class TopLevels:
    """The best levels of one book side, exact after every message, without sorting the side.

    Invariant: ``keys`` holds, sorted, the key of *every* level of the side whose key is <= ``limit``
    (key = price for asks, -price for bids, so the best level comes first). A level change inside that
    range inserts or deletes its key (a bisect on a short list); a change beyond it is ignored. When
    deletions leave fewer than ``need`` keys the range is rebuilt from the side (``heapq.nsmallest``: O(n),
    rare); when insertions let it grow past ``4 * capacity`` it is trimmed (``limit`` moves in).
    """

    __slots__ = ("side", "is_bid", "need", "capacity", "keys", "limit", "rebuilds")

    def __init__(self, side: BookSide, need: int, capacity: int = 64) -> None:
        self.side = side
        self.is_bid = side.is_bid
        self.need = need
        self.capacity = max(capacity, 4 * need)
        self.keys: list[float] = []
        self.limit = -INF
        self.rebuilds = 0

    def rebuild(self) -> None:
        self.rebuilds += 1
        levels = self.side.levels
        if self.is_bid:
            keys = heapq.nsmallest(self.capacity, [-p for p in levels])
        else:
            keys = heapq.nsmallest(self.capacity, levels)
        self.keys = keys
        # With fewer levels than the capacity every level is held: any new one belongs in the range.
        self.limit = keys[-1] if len(keys) >= self.capacity else INF

    def apply(self, changes: tuple[tuple[float, float], ...]) -> None:
        """Mirror one message's level changes (absolute sizes, 0 = removed), after the book applied them."""
        keys = self.keys
        limit = self.limit
        sign = -1.0 if self.is_bid else 1.0
        for p, q in changes:
            k = sign * p
            if k > limit:
                continue
            i = bisect_left(keys, k)
            present = i < len(keys) and keys[i] == k
            if q:
                if not present:
                    keys.insert(i, k)
            elif present:
                del keys[i]
        if len(keys) < self.need and limit != INF:
            self.rebuild()
        elif len(keys) > 4 * self.capacity:
            del keys[self.capacity :]
            self.limit = keys[-1]

    def top(self, n: int) -> list[tuple[float, float]]:
        """The best ``n`` levels ``(price, size)``, best first (fewer when the side has fewer)."""
        levels = self.side.levels
        if self.is_bid:
            return [(-k, levels[-k]) for k in self.keys[:n]]
        return [(k, levels[k]) for k in self.keys[:n]]
