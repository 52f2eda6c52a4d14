"""What the soak's exchange produced, in the form both sides compare: the sent log's record (one per diff:
symbol index, update ids, time, book digest) and the digest of a book's top levels."""

from __future__ import annotations

import array
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Levels per side hashed into a book digest (exchange side at each diff, recording side at each book event).
DIGEST_LEVELS = 50
#: Sent-log record: symbol index, first id U, last id u, exchange time (ms), digest.
SENT_RECORD = struct.Struct("<HqqqI")


def book_digest(bids: Iterable[Sequence[float]], asks: Iterable[Sequence[float]]) -> int:
    """CRC32 of the levels' floats (price, amount, ... bids then asks, best first): equal books give equal
    digests on the exchange (floats parsed from its own strings) and in the recording."""
    flat = array.array("d")
    for side in (bids, asks):
        for level in side:
            flat.append(level[0])
            flat.append(level[1])
        flat.append(-1.0)  # side separator
    return zlib.crc32(flat.tobytes())


def sent_record(symbol_index: int, first_id: int, last_id: int, ts_ms: int, digest: int) -> bytes:
    """One sent-log record (``SENT_RECORD``)."""
    return SENT_RECORD.pack(symbol_index, first_id, last_id, ts_ms, digest)


def load_sent(path: Path, n_symbols: int) -> list[tuple[array.array[int], array.array[int], array.array[int]]]:
    """Per symbol index: (first ids, last ids, digests) of every diff the exchange produced, in order. A
    record cut short by a kill at the end of the file is ignored."""
    per = [(array.array("q"), array.array("q"), array.array("Q")) for _ in range(n_symbols)]
    data = path.read_bytes()
    for sym, first, last, _ts, digest in SENT_RECORD.iter_unpack(data[: len(data) - len(data) % SENT_RECORD.size]):
        f, la, d = per[sym]
        f.append(first)
        la.append(last)
        d.append(digest)
    return per
