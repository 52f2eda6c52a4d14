"""Helios' check of Gate.io spot book messages, which ccxt does not make (``venue_checks`` runs ``check``
before ccxt handles each frame).

ccxt 4.5.90 follows Gate spot books on the order book v2 channel ``spot.obu`` (``ob.{pair}.{50|400}``): a full
book (``"full": true``), then deltas carrying ``U``/``u``. It skips a delta whose ``u`` is not above its book's
id but never checks that ``U`` follows the previous ``u``: a lost or late message leaves its book wrong,
silently. Gate's documented rule is to resubscribe when ``U != previous u + 1``; ``check`` applies it, before
ccxt applies the frame, so the broken message never reaches a book. A delta whose ``u`` is not above the last
is a repeat ccxt skips too, and passes.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

_LAST: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def check(ex: Any, frame: Any) -> str | None:
    """None when ``frame`` is not a ``spot.obu`` update or follows on; otherwise what broke."""
    text = bytes(frame).decode("utf-8", "replace") if isinstance(frame, (bytes, bytearray)) else frame
    if not isinstance(text, str) or '"spot.obu"' not in text:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:  # a frame ccxt cannot read either: its handling fails the connection (a reconnect)
        return None
    msg = parsed
    result = msg.get("result")
    if msg.get("event") != "update" or not isinstance(result, dict):
        return None
    last = _LAST.setdefault(ex, {})
    stream, first, u = str(result.get("s")), result.get("U"), result.get("u")
    if not isinstance(u, int):
        return f"gate {stream}: a book message without an integer u"
    if result.get("full"):
        last[stream] = u
        return None
    prev = last.get(stream)
    if prev is None or u <= prev:  # before its full book ccxt ignores deltas; a repeat it skips
        return None
    if first != prev + 1:
        del last[stream]  # the connection is failed; the new subscription starts from a full book
        return f"gate {stream}: update {first}..{u} does not follow {prev}"
    last[stream] = u
    return None
