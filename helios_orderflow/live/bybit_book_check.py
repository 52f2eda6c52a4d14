"""Helios' check of Bybit v5 book messages, which ccxt does not make (``venue_checks`` runs ``check`` before
ccxt handles each frame, so a broken message never reaches a book).

Bybit numbers the messages of each ``orderbook.{depth}.{symbol}`` topic with ``u``: one more per message,
a ``snapshot`` (sent on subscribing, and again after a Bybit service restart with ``u`` = 1) starts the
count afresh. ccxt 4.5.90 (``pro/bybit.py`` ``handle_order_book``) resets its book on a snapshot and applies
every delta without looking at ``u`` or ``seq``, and sets no nonce: a lost, late or skipped message leaves
ccxt's book wrong, silently. ``check`` keeps the last ``u`` per topic of one ccxt client and reports:

- a delta whose ``u`` is not the last one plus one (``"bybit orderbook.50.BTCUSDT: u jumped from A to
  B"``): a message was lost (B > A + 1) or came late (B <= A - 1); the feed then declares a gap and ccxt
  subscribes again, which brings a fresh snapshot;
- a delta before any snapshot of its topic (the book it would apply to is unknown);
- two depths of one symbol on one client: ccxt keeps one book per symbol, so ``orderbook.1`` (which
  ``watch_bids_asks`` subscribes, and which Bybit sends as snapshots only) and the depth ``watch_order_book``
  subscribes write the same book, and each resets or patches the other's; that book is no venue's book.

A delta that repeats the last ``u`` passes: it is the same message again, and its absolute sizes leave the
book as it was. Not told apart: a client watching the spot and the linear book of one symbol (both
``BTCUSDT`` on the wire, on two connections): their topics have the same names, so their ``u`` would
interleave and be reported as jumps; the Helios feed watches one market type per client.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field
from typing import Any

_TOPIC = re.compile(r'"topic"\s*:\s*"orderbook\.(\d+)\.([^"]+)"')
_TYPE = re.compile(r'"type"\s*:\s*"(\w+)"')
_U = re.compile(r'"u"\s*:\s*(\d+)')


@dataclass(slots=True)
class _ClientState:
    last_u: dict[str, int] = field(default_factory=dict)  # topic -> u of its last message handled
    depth_of: dict[str, int] = field(default_factory=dict)  # wire symbol -> depth of its last book message


_STATES: weakref.WeakKeyDictionary[Any, _ClientState] = weakref.WeakKeyDictionary()


def check(ex: Any, frame: Any) -> str | None:
    """None when ``frame`` (a raw websocket frame ccxt's ``ex`` just handled) is not a Bybit book message or
    follows on from the last one of its topic; otherwise what broke, naming the topic and the ids."""
    if isinstance(frame, (bytes, bytearray)):
        frame = bytes(frame).decode("utf-8", "replace")
    if not isinstance(frame, str) or "orderbook." not in frame:
        return None
    if not frame.rstrip().endswith("}"):
        return None  # a truncated frame: ccxt's handling fails it (a reconnect), nothing to check
    topic_m = _TOPIC.search(frame)
    if topic_m is None:
        return None
    type_m, u_m = _TYPE.search(frame), _U.search(frame)
    topic = f"orderbook.{topic_m.group(1)}.{topic_m.group(2)}"
    if type_m is None or u_m is None:
        return f"bybit {topic}: a book message without type or u"
    state = _STATES.get(ex)
    if state is None:
        state = _STATES[ex] = _ClientState()
    depth, wire, u = int(topic_m.group(1)), topic_m.group(2), int(u_m.group(1))
    other = state.depth_of.get(wire)
    state.depth_of[wire] = depth
    if other is not None and other != depth:
        state.last_u.pop(topic, None)
        return (f"bybit {topic} and orderbook.{other}.{wire} both write ccxt's one book of {wire} (ccxt keeps "
                "one book per symbol), so it is neither topic's book; watch one depth per symbol (on Bybit, "
                "no watch_bids_asks beside watch_order_book: helios.feed.bbo false)")
    if type_m.group(1) == "snapshot":
        state.last_u[topic] = u
        return None
    last = state.last_u.get(topic)
    if last is None:
        return f"bybit {topic}: a delta (u {u}) before any snapshot of the topic"
    if u == last:
        return None  # the same message again: its absolute sizes change nothing
    if u != last + 1:
        del state.last_u[topic]  # the book is broken until the next snapshot
        return f"bybit {topic}: u jumped from {last} to {u}"
    state.last_u[topic] = u
    return None
