"""Kept import path: ``from helios_orderflow.freqtrade_orderflow import populate`` (issue 17): Freqtrade's
order-flow columns from trades in Freqtrade's format. The function lives in
``helios_orderflow.freqtrade.orderflow_columns``; its docstring states the columns and semantics."""

from helios_orderflow.freqtrade.orderflow_columns import populate

__all__ = ["populate"]
