"""Helios' check of KuCoin ``/market/level2`` messages, which ccxt does not make once a book is synced
(``venue_checks`` runs ``check`` before ccxt handles each frame).

ccxt 4.5.90 joins the ``trade.l2update`` messages to a REST snapshot by sequence, then applies any message
newer than its book without checking that ``sequenceStart`` follows the previous ``sequenceEnd``: a lost or
late message leaves its book wrong, silently. KuCoin's rule: on one subscription the messages of a symbol
chain (``sequenceStart == previous sequenceEnd + 1``); a message whose ``sequenceEnd`` is not above the last is
a repeat, which KuCoin's rule (and ccxt) discards. The chain restarts with every subscription: ccxt gives each
one a new book or a new cache list, which is how a new subscription is told from the old one.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

_CHAINS: weakref.WeakKeyDictionary[Any, dict[str, tuple[tuple[int, int], int]]] = weakref.WeakKeyDictionary()


def check(ex: Any, frame: Any) -> str | None:
    """None when ``frame`` is not a level-2 update or chains on; otherwise what broke."""
    text = bytes(frame).decode("utf-8", "replace") if isinstance(frame, (bytes, bytearray)) else frame
    if not isinstance(text, str) or '"trade.l2update"' not in text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:  # a frame ccxt cannot read either: its handling fails the connection (a reconnect)
        return None
    data = (parsed.get("data") if isinstance(parsed, dict) else None) or {}
    start, end = data.get("sequenceStart"), data.get("sequenceEnd")
    symbol = ex.safe_symbol(data.get("symbol"), None, "-")
    book = (ex.orderbooks or {}).get(symbol)
    if book is None or start is None or end is None:
        return None
    chains = _CHAINS.setdefault(ex, {})
    subscription = (id(book), id(getattr(book, "cache", None)))
    prev = chains.get(symbol)
    if prev is None or prev[0] != subscription:
        chains[symbol] = (subscription, int(end))
        return None
    last = prev[1]
    if int(end) <= last:
        return None
    if int(start) != last + 1:
        del chains[symbol]  # the connection is failed; the new subscription starts a new chain
        return f"kucoin {symbol}: sequence {start}..{end} does not follow {last}"
    chains[symbol] = (subscription, int(end))
    return None
