"""The engine: one ``PairEngine`` per pair turns events into candles and signals (``pair_engine``), with
its candle accumulator (``candles``). The same engine runs live and on recordings.

May import: core, book, signals.
"""
