"""Venue book checksums (Kraken, OKX, Bitget) and the book of original level strings they are computed from.

Both venues append a CRC32 of their top-of-book to every book update so that a client can prove its
copy is right. The checksum is defined over the venue's decimal *strings* (``"0.00100000"`` and
``"0.001"`` are different inputs), so the book used for checking keeps the strings exactly as they
arrived; the float book downstream is rebuilt from the same updates.

- Kraken (websocket v1 and v2, "Book checksum" guide): top 10 asks, lowest first, then top 10 bids,
  highest first; for each level the price with ``.`` removed and leading zeros stripped, then the
  volume the same way, all concatenated; ``zlib.crc32`` of that ASCII string, compared as an unsigned
  32-bit integer with the message's ``"c"`` (a decimal string).
- OKX (v5 ``books`` channel, "Checksum" section): the first 25 bids and asks interleaved as
  ``bid_px:bid_sz:ask_px:ask_sz:...`` (a side that has run out is simply left out), CRC32 of that
  string as a *signed* 32-bit integer, compared with ``"checksum"``.
- Bitget (v1 ``books`` channel, "Checksum"): OKX's definition exactly (25 levels interleaved
  ``bid:ask``, ``price:size`` as sent, e.g. ``"0.5000"`` not ``"0.5"``, signed 32-bit CRC32).
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable

from helios_orderflow.core.book_checksums import interleaved_crc32

TextLevel = tuple[str, str]  # (price, amount) exactly as the venue sent them


def _kraken_digits(value: str) -> str:
    return value.replace(".", "").lstrip("0")


def kraken_checksum(asks: Iterable[TextLevel], bids: Iterable[TextLevel]) -> int:
    """Kraken's CRC32 (unsigned) over the given top levels: ``asks`` lowest first, ``bids`` highest
    first, 10 of each (pass more and only what you pass is used: slice first)."""
    parts: list[str] = []
    for side in (asks, bids):
        for price, amount in side:
            parts.append(_kraken_digits(price))
            parts.append(_kraken_digits(amount))
    return zlib.crc32("".join(parts).encode("ascii")) & 0xFFFFFFFF


def okx_checksum(bids: list[TextLevel], asks: list[TextLevel]) -> int:
    """OKX's CRC32 (signed 32-bit) over up to 25 levels per side, ``bids`` highest first and ``asks``
    lowest first (``core.book_checksums``)."""
    return interleaved_crc32(bids, asks)


def bitget_checksum(bids: list[TextLevel], asks: list[TextLevel]) -> int:
    """Bitget's CRC32: the same string and sign as OKX's (see the module docstring)."""
    return okx_checksum(bids, asks)


class TextBookSide:
    """One side of a book keyed by float price, keeping the venue's strings for each level."""

    __slots__ = ("levels", "is_bid")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[float, TextLevel] = {}

    def __len__(self) -> int:
        return len(self.levels)

    def set(self, price_text: str, amount_text: str) -> tuple[float, float]:
        """Apply one absolute level change; returns the ``(price, amount)`` floats applied."""
        price = float(price_text)
        amount = float(amount_text)
        if amount:
            self.levels[price] = (price_text, amount_text)
        else:
            self.levels.pop(price, None)
        return price, amount

    def best_prices(self, n: int) -> list[float]:
        """The ``n`` best prices, best first (O(len) per call: fine for checks of 10-25 levels)."""
        if self.is_bid:
            return heapq.nlargest(n, self.levels)
        return heapq.nsmallest(n, self.levels)

    def top(self, n: int) -> list[TextLevel]:
        levels = self.levels
        return [levels[p] for p in self.best_prices(n)]

    def truncate(self, depth: int) -> list[float]:
        """Drop every level beyond the ``depth`` best; returns the dropped prices."""
        excess = len(self.levels) - depth
        if excess <= 0:
            return []
        # The worst ``excess`` prices: lowest bids / highest asks.
        worst = heapq.nsmallest(excess, self.levels) if self.is_bid else heapq.nlargest(excess, self.levels)
        for p in worst:
            del self.levels[p]
        return worst


class TextBook:
    """A two-sided book of venue strings, used only to verify checksums in the importers."""

    __slots__ = ("bids", "asks")

    def __init__(self) -> None:
        self.bids = TextBookSide(is_bid=True)
        self.asks = TextBookSide(is_bid=False)

    def clear(self) -> None:
        self.bids.levels.clear()
        self.asks.levels.clear()

    def kraken_checksum(self) -> int:
        return kraken_checksum(self.asks.top(10), self.bids.top(10))

    def okx_checksum(self) -> int:
        return okx_checksum(self.bids.top(25), self.asks.top(25))

    def bitget_checksum(self) -> int:
        return bitget_checksum(self.bids.top(25), self.asks.top(25))
