"""The book's hot loop in compiled code (numba): apply a run of depth diffs to both sides of a book held as sorted
arrays, and after each diff the engine's per-message work (usable-book checks and the multi-level OFI).

Layout (``FlowBook`` owns the arrays; docs/research.md, "Faster engine", third pass):

- A side is ``keys``/``sizes`` float64 arrays, used from ``start`` for ``n`` levels with room on both ends,
  ascending by key and best level *last*: bids ``key = price`` (highest bid last), asks ``key = -price`` (lowest ask
  last). An insertion or deletion shifts the shorter part of the side (the levels before it or after it), so the
  changes near the touch and at the far edge, most of them on a diff stream, move few elements. A price is present
  iff its size is non-zero: a change with size 0 (either sign) removes the price, any other size (NaN included)
  sets it, as the dict book's ``if q:``. Prices are finite (a venue's prices; NaN prices have no order).
- ``diffs``: the changes of the queued messages, flat ``price, size, price, size ...`` (a message's bids, then its
  asks); ``meta``: per message ``(bid changes, ask changes, what)``; ``what`` 0 = apply only (diffs replayed from
  the sync buffer), 1 = apply, then check the book and count OFI (``PairEngine``'s diff), 2 = check the book
  without OFI (after a snapshot).
- ``flow`` (float64): ``OFI_LAST``, ``OFI_TOTAL``, ``OFI_MULTI_TOTAL``, ``CANDLE_OFI``, ``CANDLE_OFI_MULTI``;
  ``state`` (int64): ``NB``/``NA`` (levels per side), ``BOOK_OK``, ``OFI_BASE``, ``CROSSED``, ``HAD_BOOK``,
  ``NTOP_B``/``NTOP_A`` (levels in ``top``), ``SB``/``SA`` (where each side starts in its arrays); ``top``
  (4 x n, ``FlowBook.flow_top``): the best levels after the last usable message (bid prices, bid sizes, ask
  prices, ask sizes; best first): OFI's previous state.

Bit for bit what the Python engine computed (``ofi.ofi_levels``, ``PairEngine._book_changed`` before this pass):
the same IEEE operations in the same order (no fast-math, sequential sums), so every sum has the same bits.
Compiled once per machine and cached (``cache=True``) beside this module or in numba's user cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from helios_orderflow.book.ofi_term import ofi_term

OFI_LAST, OFI_TOTAL, OFI_MULTI_TOTAL, CANDLE_OFI, CANDLE_OFI_MULTI = range(5)
NB, NA, BOOK_OK, OFI_BASE, CROSSED, HAD_BOOK, NTOP_B, NTOP_A, SB, SA = range(10)
APPLY, APPLY_COUNT, CHECK = 0, 1, 2

#: The one definition of an OFI term (``ofi_term.py``, re-exported by ``signals.ofi``), compiled.
_ofi_term = njit(cache=True, nogil=True)(ofi_term)


@njit(cache=True, nogil=True)
def _apply_side(keys: np.ndarray, sizes: np.ndarray, state: np.ndarray, side: int, diffs: np.ndarray, pos: int,
                count: int, negate: bool) -> None:
    """Apply ``count`` changes from ``diffs[pos:]`` to one side (``side`` = ``NB`` or ``NA``; its start is
    ``state[side + 8]``); the caller made sure ``count`` insertions fit at either end."""
    st = state[side + 8]
    n = state[side]
    for j in range(pos, pos + 2 * count, 2):
        k = -diffs[j] if negate else diffs[j]
        q = diffs[j + 1]
        lo = st
        hi = st + n
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid] < k:
                lo = mid + 1
            else:
                hi = mid
        end = st + n
        found = lo < end and keys[lo] == k
        if q != 0.0:  # NaN sets the level, as the dict book's ``if q:``
            if found:
                sizes[lo] = q
            elif lo - st < end - lo:  # fewer levels before: move them down one
                for t in range(st - 1, lo - 1):
                    keys[t] = keys[t + 1]
                    sizes[t] = sizes[t + 1]
                st -= 1
                keys[lo - 1] = k
                sizes[lo - 1] = q
                n += 1
            else:  # move the levels from ``lo`` on up one
                for t in range(end, lo, -1):
                    keys[t] = keys[t - 1]
                    sizes[t] = sizes[t - 1]
                keys[lo] = k
                sizes[lo] = q
                n += 1
        elif found:
            if lo - st < end - 1 - lo:
                for t in range(lo, st, -1):
                    keys[t] = keys[t - 1]
                    sizes[t] = sizes[t - 1]
                st += 1
            else:
                for t in range(lo, end - 1):
                    keys[t] = keys[t + 1]
                    sizes[t] = sizes[t + 1]
            n -= 1
    state[side + 8] = st
    state[side] = n


@njit(cache=True, nogil=True)
def _book_changed(bk: np.ndarray, bq: np.ndarray, ak: np.ndarray, aq: np.ndarray, top: np.ndarray,
                  flow: np.ndarray, state: np.ndarray, count_ofi: bool) -> None:
    """The engine's work after a message: a usable book (both sides, not crossed) or not, the OFI terms of the best
    ``top.shape[1]`` levels against the previous usable book (``ofi.ofi_levels``: a missing level is price -inf
    (bid) / +inf (ask) and size 0), and the best levels as the next baseline."""
    nb = state[NB]
    na = state[NA]
    eb = state[SB] + nb  # past the best bid
    ea = state[SA] + na  # past the best ask
    if nb == 0 or na == 0:
        state[BOOK_OK] = 0
        state[OFI_BASE] = 0
        return
    if bk[eb - 1] >= -ak[ea - 1]:
        state[CROSSED] += 1
        state[BOOK_OK] = 0
        state[OFI_BASE] = 0
        return
    state[BOOK_OK] = 1
    state[HAD_BOOK] = 1
    n = top.shape[1]
    if count_ofi and state[OFI_BASE]:
        npb = state[NTOP_B]
        npa = state[NTOP_A]
        best = 0.0
        total = 0.0
        for m in range(n):
            if m < npb:
                pb0 = top[0, m]
                qb0 = top[1, m]
            else:
                pb0 = -np.inf
                qb0 = 0.0
            if m < npa:
                pa0 = top[2, m]
                qa0 = top[3, m]
            else:
                pa0 = np.inf
                qa0 = 0.0
            if m < nb:
                pb1 = bk[eb - 1 - m]
                qb1 = bq[eb - 1 - m]
            else:
                pb1 = -np.inf
                qb1 = 0.0
            if m < na:
                pa1 = -ak[ea - 1 - m]
                qa1 = aq[ea - 1 - m]
            else:
                pa1 = np.inf
                qa1 = 0.0
            e = _ofi_term(pb0, qb0, pa0, qa0, pb1, qb1, pa1, qa1)
            if m == 0:
                best = e
            total += e
        flow[OFI_LAST] = best
        flow[OFI_TOTAL] += best
        flow[OFI_MULTI_TOTAL] += total
        flow[CANDLE_OFI] += best
        flow[CANDLE_OFI_MULTI] += total
    mb = min(n, nb)
    for m in range(mb):
        top[0, m] = bk[eb - 1 - m]
        top[1, m] = bq[eb - 1 - m]
    ma = min(n, na)
    for m in range(ma):
        top[2, m] = -ak[ea - 1 - m]
        top[3, m] = aq[ea - 1 - m]
    state[NTOP_B] = mb
    state[NTOP_A] = ma
    state[OFI_BASE] = 1


@njit(cache=True, nogil=True)
def run_messages(bk: np.ndarray, bq: np.ndarray, ak: np.ndarray, aq: np.ndarray, top: np.ndarray,
                 flow: np.ndarray, state: np.ndarray, diffs: np.ndarray, meta: np.ndarray, start: int,
                 pos: int) -> tuple[int, int]:
    """Apply the queued messages in order from ``meta[start]`` / ``diffs[pos]`` (see the module docstring). Stops
    before a message whose insertions might not fit at either end of a side and returns where it stopped (the
    caller re-centres or grows the sides and calls again from there); ``(-1, -1)`` when every message is applied."""
    for i in range(start, meta.shape[0], 3):
        cb = meta[i]
        ca = meta[i + 1]
        what = meta[i + 2]
        if (state[SB] < cb or state[SB] + state[NB] + cb > bk.shape[0]
                or state[SA] < ca or state[SA] + state[NA] + ca > ak.shape[0]):
            return i, pos
        if cb:
            _apply_side(bk, bq, state, NB, diffs, pos, cb, False)
            pos += 2 * cb
        if ca:
            _apply_side(ak, aq, state, NA, diffs, pos, ca, True)
            pos += 2 * ca
        if what != APPLY:
            _book_changed(bk, bq, ak, aq, top, flow, state, what == APPLY_COUNT)
    return -1, -1
