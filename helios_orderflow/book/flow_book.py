"""The engine's book: both sides as sorted arrays kept by compiled code, with the per-message OFI in the same loop.

Why: applying a diff to a dict book, reading the best levels and the OFI terms in Python cost ~7.5 us a message,
and turning the dicts into sorted arrays for each whole-book read ~73 us (docs/research.md, "Faster engine").
Here a message is only queued (``apply_diff``: its levels appended to a flat float buffer, ~2 us); the queue runs
through ``flow_kernel.run_messages`` in one call when something reads the book or the flow (``flush``): the
engine's timers, a snapshot, a gap, a reader of ``bids``/``asks``. Trades read neither, and diffs read nothing
trades write, so the replay hands the kernel every diff between two timers at once, and the live engine the diffs
of one socket read: one engine, the same code. The whole-book arrays are slices of the sides (``arrays``).

``flow``/``state``/``flow_top`` (see ``flow_kernel``) hold the OFI sums, the usable-book flags and the crossed
count; the engine reads them after ``flush`` and owns their meaning (``PairEngine``). ``bids``/``asks`` are
read-only views with the ``BookSide`` reads (``levels``, ``best``, ``top`` ...) for diagnostics and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import cast

import numpy as np

from helios_orderflow.book import flow_kernel as fk
from helios_orderflow.book.arrays import SideArrays, sorted_arrays
from helios_orderflow.core.events import Level

_chain = chain.from_iterable
_MIN_CAPACITY = 256
_run_messages = cast(Callable[..., tuple[int, int]], fk.run_messages)  # (numba's dispatcher, typed for mypy)


class FlowBook:
    """A two-sided L2 book plus the engine's per-message flow state (``OrderBook``'s interface for ``BookSync``).

    ``n_levels``: the best levels OFI compares (``flow.ofi_levels``). ``message_kind``: what ``apply_diff`` queues a
    message as (``flow_kernel.APPLY_COUNT`` by default; the engine sets ``APPLY`` while a snapshot replays the
    sync buffer)."""

    def __init__(self, n_levels: int) -> None:
        self.n_levels = max(1, n_levels)
        self.update_id = -1
        self.message_kind = fk.APPLY_COUNT
        #: Set by every ``flush`` that applied messages; the engine clears it when it takes the flow.
        self.changed = False
        self.flow = np.zeros(5)
        self.state = np.zeros(10, np.int64)
        self.flow_top = np.zeros((4, self.n_levels))
        self._sides: list[np.ndarray] = []  # bid keys, bid sizes, ask keys, ask sizes (``flow_kernel``)
        #: Queued messages: each message's bid and ask changes as given (two entries a message), and the messages
        #: of another kind than ``APPLY_COUNT`` as (message number, kind).
        self._queue: list[Sequence[Level]] = []
        self._kinds: list[tuple[int, int]] = []
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.bids = FlowSide(self, True)
        self.asks = FlowSide(self, False)
        self.load_snapshot((), ())

    def __getstate__(self) -> dict[str, object]:
        """Pickled (engine checkpoints) with the queue applied and without the arrays' cache."""
        self.flush()
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    # -- writes --------------------------------------------------------------------------------------
    def apply_diff(self, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Queue one message's absolute level changes (0 removes the price); applied by the next ``flush``."""
        queue = self._queue
        if self.message_kind != fk.APPLY_COUNT:
            self._kinds.append((len(queue) // 2, self.message_kind))
        queue.append(bids)
        queue.append(asks)

    def mark_changed(self) -> None:
        """Queue the usable-book check without OFI (after a snapshot: the change is not order flow)."""
        self._kinds.append((len(self._queue) // 2, fk.CHECK))
        self._queue += ((), ())

    def load_snapshot(self, bids: Iterable[Level], asks: Iterable[Level], update_id: int = -1) -> None:
        """Replace both sides (zero amounts are ignored; a repeated price keeps its last amount)."""
        self.flush()
        bp, bq = sorted_arrays({p: q for p, q in bids if q})
        ap, aq = sorted_arrays({p: q for p, q in asks if q})
        self._sides = []
        self._place(bp, bq, -ap[::-1], aq[::-1], 0, 0)
        self.update_id = update_id

    def clear(self) -> None:
        self.load_snapshot((), ())

    def flush(self) -> bool:
        """Apply the queued messages (one compiled call); whether there were any."""
        queue = self._queue
        if not queue:
            return False
        # The changes' floats are read here, in two C loops over the whole queue (not a call per message).
        counts = np.fromiter(map(len, queue), np.int64, len(queue))
        meta = np.empty(len(queue) // 2 * 3, np.int64)
        meta[0::3] = counts[0::2]
        meta[1::3] = counts[1::2]
        meta[2::3] = fk.APPLY_COUNT
        for i, kind in self._kinds:
            meta[3 * i + 2] = kind
        diffs = np.fromiter(_chain(_chain(queue)), np.float64, 2 * int(counts.sum()))
        at = (0, 0)
        while True:
            at = _run_messages(*self._sides, self.flow_top, self.flow, self.state, diffs, meta, *at)
            if at[0] < 0:
                break
            # The next message might not fit at an end of a side: the sides re-centred, with room for it.
            self._place(*self.arrays_raw(), int(meta[at[0]]), int(meta[at[0] + 1]))
        self._queue = []
        self._kinds = []
        self._arrays = None
        self.changed = True
        return True

    def _place(self, bk: np.ndarray, bq: np.ndarray, ak: np.ndarray, aq: np.ndarray, more_b: int, more_a: int
               ) -> None:
        """Make the sides' arrays from their used parts, centred in a capacity of at least ``more_*`` insertions at
        either end and four times the levels."""
        state = self.state
        for side, keys, sizes, more in ((fk.NB, bk, bq, more_b), (fk.NA, ak, aq, more_a)):
            n = len(keys)
            cap = max(_MIN_CAPACITY, 4 * n, n + 2 * more + 2)
            start = (cap - n) // 2
            out_k = np.empty(cap)
            out_q = np.empty(cap)
            out_k[start:start + n] = keys
            out_q[start:start + n] = sizes
            state[side] = n
            state[side + 8] = start
            self._sides[2 * side:2 * side + 2] = [out_k, out_q]
        self._arrays = None

    def arrays_raw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The used parts of the sides' arrays in their own order (bid keys, bid sizes, ask keys, ask sizes: best
        last, ask keys negated); views."""
        bk, bq, ak, aq = self._sides
        state = self.state
        sb, nb, sa, na = int(state[fk.SB]), int(state[fk.NB]), int(state[fk.SA]), int(state[fk.NA])
        return bk[sb:sb + nb], bq[sb:sb + nb], ak[sa:sa + na], aq[sa:sa + na]

    # -- reads ---------------------------------------------------------------------------------------
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bid prices, bid sizes, ask prices, ask sizes), each side ascending by price; read-only, and never
        written afterwards (the next change makes new ones), so a reader may keep them."""
        self.flush()
        arr = self._arrays
        if arr is None:
            bk, bq, ak, aq = self.arrays_raw()
            arr = (bk.copy(), bq.copy(), -ak[::-1], aq[::-1].copy())
            for a in arr:
                a.flags.writeable = False
            self._arrays = arr
        return arr

    def side_arrays(self, is_bid: bool) -> SideArrays:
        bp, bq, ap, aq = self.arrays()
        return (bp, bq) if is_bid else (ap, aq)

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask."""
        b, a = self.bids.best_price(), self.asks.best_price()
        return b is not None and a is not None and b >= a

    def best_bid(self) -> Level | None:
        return self.bids.best()

    def best_ask(self) -> Level | None:
        return self.asks.best()

    def top(self, n: int | None = None) -> tuple[list[Level], list[Level]]:
        """The ``n`` best levels of each side (all when None), best first: ``(bids, asks)``."""
        return self.bids.top(n), self.asks.top(n)


class FlowSide:
    """Read-only view of one side of a ``FlowBook`` with ``BookSide``'s reads (each applies the queue first)."""

    __slots__ = ("_book", "is_bid")

    def __init__(self, book: FlowBook, is_bid: bool) -> None:
        self._book = book
        self.is_bid = is_bid

    def __len__(self) -> int:
        self._book.flush()
        return int(self._book.state[fk.NB if self.is_bid else fk.NA])

    def arrays(self) -> SideArrays:
        return self._book.side_arrays(self.is_bid)

    @property
    def levels(self) -> dict[float, float]:
        """A copy of the side as ``price -> amount`` (ascending prices)."""
        p, q = self.arrays()
        return dict(zip(p.tolist(), q.tolist(), strict=True))

    def top(self, n: int | None = None) -> list[Level]:
        """The ``n`` best levels (all when None), best first."""
        p, q = self.arrays()
        if self.is_bid:
            i = 0 if n is None else max(0, len(p) - n)
            return list(zip(p[i:][::-1].tolist(), q[i:][::-1].tolist(), strict=True))
        return list(zip(p[:n].tolist(), q[:n].tolist(), strict=True))

    best_levels = top

    def best(self) -> Level | None:
        top = self.top(1)
        return top[0] if top else None

    def best_price(self) -> float | None:
        best = self.best()
        return None if best is None else best[0]

    def between(self, low: float, high: float) -> list[Level]:
        """Every level with ``low <= price <= high``, in ascending price order."""
        p, q = self.arrays()
        i, j = p.searchsorted(low), p.searchsorted(high, "right")
        return list(zip(p[i:j].tolist(), q[i:j].tolist(), strict=True))

    def amount_at(self, price: float) -> float:
        return self.levels.get(price, 0.0)
