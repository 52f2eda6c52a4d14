"""Helios: order-flow intelligence for Freqtrade (L2 books, trades, heatmaps, signals)."""

__version__ = "0.1.0"
