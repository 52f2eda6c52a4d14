"""One term of the order-flow imbalance (Cont, Kukanov & Stoikov 2014, eq. 2; ``signals/ofi.py`` has the
definitions). It lives in the book layer because the compiled book (``flow_kernel.py``) computes OFI in the loop
that applies each message, and compiles this very function; ``signals.ofi`` re-exports it, so there is one
definition. Plain Python: importing it does not import numba."""

from __future__ import annotations


def ofi_term(pb0: float, qb0: float, pa0: float, qa0: float, pb1: float, qb1: float, pa1: float, qa1: float) -> float:
    """One CKS OFI term ``e_n`` for one level from state 0 (before) to state 1 (after)."""
    e = 0.0
    if pb1 >= pb0:
        e += qb1
    if pb1 <= pb0:
        e -= qb0
    if pa1 <= pa0:
        e -= qa1
    if pa1 >= pa0:
        e += qa0
    return e
