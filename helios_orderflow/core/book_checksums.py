"""The CRC32 that OKX (v5 ``books``) and Bitget (v1 ``books``) send with book messages, in one place for the
importers (which verify captures) and the live feed (which verifies ccxt's book): the first 25 bids and asks
interleaved as ``bidPx:bidSz:askPx:askSz:...`` over the venue's strings exactly as sent, CRC32 as a signed
32-bit integer."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

DEPTH = 25


def interleaved_crc32(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """The checksum over up to 25 levels per side, ``bids`` highest first and ``asks`` lowest first."""
    parts: list[str] = []
    for i in range(DEPTH):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    crc = zlib.crc32(":".join(parts).encode("ascii"))
    return crc - (1 << 32) if crc >= (1 << 31) else crc
