"""The ``helios`` command line: the entry point (``main``) and one module per subcommand (``commands``).

May import: core, book, signals, engine, recording, importers, features, emulator, live, freqtrade, dashboard.
"""
