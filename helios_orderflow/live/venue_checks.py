"""What the feed does per venue where ccxt's client is not enough: book checks Helios makes itself (one module
per venue, ``live/<venue>_book_check.py``, each defining ``check(ex, frame) -> str | None``), the book depth
each venue's ccxt client accepts, and the streams the feed must not open on a venue.

The frame guard (``ccxt_edge.guard_frames``) runs a venue's check on every raw websocket frame, either
**before** ccxt handles it (a sequence check: the ids are in the frame, and a broken message must never reach
a book) or **after** (a checksum of the book the frame left). A check returns None when the frame is fine (or
not a book message) and a sentence saying what broke otherwise; the guard then fails the connection with
ccxt's ``ChecksumError`` (a frame failed before is not handled): every watcher on it is rejected, the feed
declares a gap for each pair and ccxt subscribes again with a fresh snapshot when the loops call it.

- OKX sends a CRC32 ``checksum`` of its top 25 levels with every book message; ccxt 4.5.90 checks only
  ``prevSeqId``: ``okx_book_check`` verifies the checksum against ccxt's book (after).
- Bybit v5 numbers each topic's book messages (``u``); ccxt applies deltas without looking: ``bybit_book_check``
  checks that ``u`` follows on (before).
- Gate (``spot.obu``) and KuCoin (``/market/level2`` once synced): ccxt skips stale messages but does not check
  that ``U``/``sequenceStart`` follows the previous message: ``gate_book_check``, ``kucoin_book_check`` (before).
- Binance: ccxt checks ``U``/``u`` itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: ccxt id -> (module holding its check, "before" or "after" ccxt handles the frame)
_CHECKS = {"okx": ("okx_book_check", "after"), "bybit": ("bybit_book_check", "before"),
           "gate": ("gate_book_check", "before"), "kucoin": ("kucoin_book_check", "before")}

#: ``check(frame) -> problem or None``, bound to one exchange client
FrameCheck = Callable[[Any], "str | None"]

#: Streams the feed does not open on a venue, and why (said in each pair's health as a limit).
NO_BBO = {
    "bybit": "no best bid/offer stream on bybit: ccxt keeps one book per symbol, and watch_bids_asks "
             "(orderbook.1) would overwrite the depth book with one level",
}


#: The most symbols one multi-symbol trades watch may carry on a venue: ccxt sends them in one subscribe request,
#: and Bybit spot refuses a request with more than 10 args ("args size >10"), so with 11 pairs or more no trade
#: would ever arrive. The feed splits its trade watchers into groups of at most this many.
SYMBOLS_PER_WATCH = {"bybit": 10}


def frame_checks(exchange_id: str, ex: Any) -> tuple[FrameCheck | None, FrameCheck | None]:
    """(check before ccxt handles a frame, check after) for ``exchange_id``'s client ``ex``; None where ccxt
    checks enough itself."""
    entry = _CHECKS.get(exchange_id)
    if entry is None:
        return None, None
    name, when = entry
    module = importlib.import_module(f"helios_orderflow.live.{name}")
    check: Callable[[Any, Any], str | None] = module.check

    def bound(frame: Any) -> str | None:
        return check(ex, frame)

    return (bound, None) if when == "before" else (None, bound)


def book_limit(exchange_id: str, depth: int) -> int | None:
    """The ``limit`` to pass ``watch_order_book`` for a book of ``depth`` levels: the nearest the venue's ccxt
    client accepts. KuCoin takes None, 5, 20, 50 or 100 (None: the full level-2 stream on the 100-level public
    snapshot; the others switch channels); Gate's ``spot.obu`` has 50 or 400 levels; Bybit spot 1/50/200."""
    if exchange_id == "kucoin":
        return None
    if exchange_id == "gate":
        return 400 if depth > 50 else 50
    return depth
