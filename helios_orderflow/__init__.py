"""Helios: order-flow intelligence for Freqtrade (L2 books, trades, heatmaps, signals).

Sub-packages by layer, lowest first; each may import only the layers its ``__init__`` names
(``tests/test_layers.py`` holds the code to that, docs/architecture.md draws it):
``core`` (events, settings, errors) < ``book`` < ``signals`` < ``engine``; ``recording`` and ``importers``
(edges that store and read events); ``features`` (per-candle tables from recordings); ``emulator`` (the local
exchange); ``live`` (the feed thread and shared state); ``freqtrade`` (strategy base, rule, config); ``cli``.
``devtools`` (demo, soak, benchmarks) is not installed.

Kept import paths: ``helios_orderflow.strategy.HeliosStrategy``, ``helios_orderflow.exchange.start_in_thread``,
``helios_orderflow.freqtrade_orderflow.populate``.
"""

__version__ = "0.1.0"
