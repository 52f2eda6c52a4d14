"""A book side as NumPy arrays sorted by price: what the engine's whole-book work (wall scans, depth imbalance,
heatmap columns) reads. Ascending prices make every sum over them independent of the order the levels were
inserted in.

``sorted_arrays`` converts a side kept as a dict (a float conversion per level, then a sort): a snapshot loaded
into the engine's ``FlowBook``, and the dict books of tests and tools. The prices are the dict's keys and each size
the float the dict holds, in ascending price order (prices are unique).
"""

from __future__ import annotations

import numpy as np

#: (prices ascending, sizes) of one side.
SideArrays = tuple[np.ndarray, np.ndarray]


def sorted_arrays(levels: dict[float, float]) -> SideArrays:
    """(prices ascending, sizes) of every level of ``levels`` (price -> size)."""
    n = len(levels)
    p = np.fromiter(levels.keys(), np.float64, n)
    q = np.fromiter(levels.values(), np.float64, n)
    order = p.argsort()  # (the method: no Python wrapper around the same sort)
    return p[order], q[order]
