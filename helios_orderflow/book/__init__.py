"""One L2 order book and keeping it right: the book itself (``order_book``), the venue-agnostic
snapshot+delta sequencing (``sync``) and the diff between two snapshots (``diff``).

May import: core.
"""
