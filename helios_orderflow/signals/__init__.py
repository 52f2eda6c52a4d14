"""The order-flow calculators, each a pure function of events: liquidity heatmap, CVD, VWAP, OFI,
walls, absorption and exhaustion. They never read a clock.

May import: core, book.
"""
