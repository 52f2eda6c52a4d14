"""OKX's book checksum, verified against ccxt's book (ccxt 4.5.90 checks ``prevSeqId`` only).

Every ``books`` message (snapshot and update) carries ``checksum``: CRC32, as a signed 32-bit integer, of the
best 25 bids and asks interleaved ``bidPx:bidSz:askPx:askSz:...`` (a side that runs out is left out), over
the price and size *strings exactly as OKX sent them* (``"0.5"`` and ``"0.50"`` differ). ccxt keeps floats,
so the strings are kept here: per client and instrument, a map price -> (price string, size string) of what
the venue sent, reset by each snapshot and updated by each update. After ccxt handled a frame, the best 25
levels of ccxt's own book (``ex.orderbooks[symbol]``) are looked up in that map and checksummed; a level
whose float has no string (or whose size string does not parse to ccxt's size) is formatted from the float
(``repr``, trailing ``.0`` dropped), which then shows as a mismatch. So it is ccxt's book, not a shadow
copy, that is checked.

``check`` is called by the frame guard (``live.venue_checks``) with each raw websocket frame after ccxt
handled it; it returns None for anything but a ``books`` frame ccxt applied, and a sentence for a mismatch.
The same check serves ``books-l2-tbt`` and ``books50-l2-tbt`` (same checksum); ``books5`` and ``bbo-tbt``
carry none.
"""

from __future__ import annotations

import json
from typing import Any

from helios_orderflow.core.book_checksums import DEPTH, interleaved_crc32

#: Channels whose messages carry OKX's 25-level checksum
CHECKSUM_CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
CHECKSUM_DEPTH = DEPTH
_STRINGS_ATTR = "_helios_okx_strings"

#: price -> (price string, size string) as the venue sent them, per side
Side = dict[float, tuple[str, str]]


okx_checksum = interleaved_crc32  # OKX's definition (core.book_checksums)


def float_text(value: float) -> str:
    """A float as OKX would write it (shortest decimal, no ``.0``), for a level whose string was not seen."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(value, "f")
    return text[:-2] if text.endswith(".0") else text


def _apply(side: Side, levels: Any) -> None:
    for level in levels or ():
        px, sz = str(level[0]), str(level[1])
        price = float(px)
        if float(sz):
            side[price] = (px, sz)
        else:
            side.pop(price, None)


def _texts(side: Side, levels: Any) -> list[tuple[str, str]]:
    """The venue's strings for ccxt's ``levels`` ([price, amount], best first)."""
    out = []
    for level in levels[:CHECKSUM_DEPTH]:
        price, amount = float(level[0]), float(level[1])
        seen = side.get(price)
        if seen is not None and float(seen[1]) == amount:
            out.append(seen)
        else:
            out.append((float_text(price), float_text(amount)))
    return out


def check(ex: Any, frame: Any) -> str | None:
    """Verify the checksum of one ``books`` frame against ccxt's book of that instrument (after ccxt handled
    the frame); None when it matches or the frame is not a book message ccxt applied."""
    if isinstance(frame, (bytes, bytearray)):
        frame = frame.decode()
    if not isinstance(frame, str) or '"books' not in frame:
        return None
    try:
        message = json.loads(frame)
    except ValueError:
        return None  # not JSON: the guard has failed the connection already if ccxt could not handle it
    arg = message.get("arg") if isinstance(message, dict) else None
    if not isinstance(arg, dict) or arg.get("channel") not in CHECKSUM_CHANNELS:
        return None
    action = message.get("action")
    data = message.get("data") or []
    inst_id = arg.get("instId")
    if action not in ("snapshot", "update") or not data or not isinstance(inst_id, str):
        return None
    symbol = ex.safe_market(inst_id)["symbol"]
    strings: dict[str, tuple[Side, Side]] = getattr(ex, _STRINGS_ATTR, None) or {}
    setattr(ex, _STRINGS_ATTR, strings)
    book = (ex.orderbooks or {}).get(symbol)
    if action == "snapshot":
        strings[symbol] = ({}, {})
    elif symbol not in strings:
        return None  # an update ccxt had no book for (it ignores those too)
    bid_side, ask_side = strings[symbol]
    for entry in data:
        _apply(bid_side, entry.get("bids"))
        _apply(ask_side, entry.get("asks"))
    last = data[-1]
    sent = last.get("checksum")
    if book is None or sent is None or book.get("nonce") != last.get("seqId"):
        # ccxt rejected the message (a broken prevSeqId chain: it dropped the book and raised) or has none
        strings.pop(symbol, None)
        return None
    got = okx_checksum(_texts(bid_side, book["bids"]), _texts(ask_side, book["asks"]))
    if got != int(sent):
        return f"okx checksum mismatch on {symbol}: sent {sent}, book gives {got}"
    return None
