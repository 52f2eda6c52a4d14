"""The live side: the feed thread that keeps books and trades through ccxt.pro (``feed``), the shared
state Freqtrade's callbacks read (``state``), health, reconnect backoff and the malloc pin.

May import: core, book, signals, engine, recording.
"""
