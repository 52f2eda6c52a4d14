"""Freqtrade glue: the strategy base class (``strategy``), the entry and stop rule, risk sizing, the
``helios`` config section and the process-wide feed registry, config templates and credential redaction,
and Freqtrade's own order-flow columns computed from trades (``orderflow_columns``). It
imports ``dashboard`` to start the page beside the bot.

May import: core, book, signals, engine, recording, importers, features, live, dashboard.
"""
