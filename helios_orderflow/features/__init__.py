"""Per-candle feature tables for Freqtrade from recordings: computing and caching them (``compute``),
joining them to Freqtrade's dataframe (``backtest``) and exporting trades (``export_trades``).

May import: core, book, signals, engine, recording, importers.
"""
