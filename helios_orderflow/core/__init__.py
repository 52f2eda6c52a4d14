"""The vocabulary every layer shares: the event types (``events``), typed settings with their defaults
(``settings``), errors, symbol names and the trade-id rules of each venue. Pure data and rules, no I/O.

May import: nothing else in Helios.
"""
