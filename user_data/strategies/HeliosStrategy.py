"""HeliosStrategy for Freqtrade: order-flow entries (absorption at liquidity walls + RSI), stops behind the
nearest protecting wall and 1-2 % risk sizing. The machinery lives in the ``helios_orderflow`` package
(helios_orderflow/freqtrade/strategy.py); this file exists because Freqtrade only finds a strategy class defined in a
file of its strategy folder. Subclass it here to change the trading idea."""

from helios_orderflow.freqtrade.strategy import HeliosStrategy as _Base


class HeliosStrategy(_Base):
    pass
