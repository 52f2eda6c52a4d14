"""A small local parser for ``../shared/data/binance-spot-btcusdt`` used by the order-flow engine's tests.

Lines are ``<local receive time, ns> <raw JSON>``: combined-stream depth diffs (``U``, ``u``, ``b``, ``a``,
``E`` in ms), bookTicker (``u``, ``b``, ``B``, ``a``, ``A``; no timestamp, so ``ts_us`` is the local time),
trades (``t``, ``p``, ``q``, ``T`` in ms, ``m`` true = the buyer was the maker, i.e. the taker sold) and one REST
snapshot line ``{"lastUpdateId", "bids", "asks"}`` (no timestamp: local time). Kept independent of the
importers on purpose (the engine tests must not fail because an importer changed); the lead's importer
may replace it later. Parsed once per test session.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, Trade

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "binance-spot-btcusdt"
FILES = (DATA_DIR / "btcusdt_20240808.gz", DATA_DIR / "btcusdt_20240809.gz")
EXCHANGE = "binance"
SYMBOL = "BTC/USDT"
#: Checked figures of this stream (../shared/README.md).
CVD = -28.93328
TRADES = 19904


def _levels(raw: list[list[str]]) -> tuple[tuple[float, float], ...]:
    return tuple((float(p), float(q)) for p, q in raw)


def parse_line(line: str) -> Event | None:
    ts_text, _, raw = line.partition(" ")
    local_us = int(ts_text) // 1000
    msg = json.loads(raw)
    if "lastUpdateId" in msg:
        return BookSnapshot(
            EXCHANGE, SYMBOL, local_us, local_us, int(msg["lastUpdateId"]), _levels(msg["bids"]), _levels(msg["asks"])
        )
    stream = msg["stream"]
    d = msg["data"]
    if stream.endswith("@trade"):
        return Trade(
            EXCHANGE, SYMBOL, int(d["T"]) * 1000, local_us, float(d["p"]), float(d["q"]),
            "sell" if d["m"] else "buy", str(d["t"]),
        )
    if "@depth" in stream:
        return BookDelta(
            EXCHANGE, SYMBOL, int(d["E"]) * 1000, local_us, int(d["U"]), int(d["u"]), NO_ID,
            _levels(d["b"]), _levels(d["a"]),
        )
    if stream.endswith("@bookTicker"):
        return BestBidOffer(
            EXCHANGE, SYMBOL, local_us, local_us, int(d["u"]),
            float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"]),
        )
    return None


@functools.cache
def events() -> tuple[Event, ...]:
    """Every event of both files, in receive order (cached for the test session)."""
    out: list[Event] = []
    for path in FILES:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                if line.strip():
                    ev = parse_line(line)
                    if ev is not None:
                        out.append(ev)
    return tuple(out)


def trades() -> list[Trade]:
    return [e for e in events() if isinstance(e, Trade)]
