"""Development tools, not part of the installed package (setup.cfg excludes them from the wheel, the
Docker image never copies them): the demo harness, the reliability soak, the benchmarks and the bundled
sample data they use. ``make demo``, ``make soak`` and ``make bench`` run them from a clone.

May import: core, book, signals, engine, recording, importers, features, emulator, live, freqtrade, cli, dashboard.
"""
