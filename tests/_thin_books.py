"""A small test-side loader for the thin Gate.io and KuCoin books in ``../shared/data/cryptofeed``.

Kept independent of ``helios_orderflow.importers`` on purpose (the thin-market tests must not wait for, or
fail because of, the Gate/KuCoin importers); it reads the raw cryptofeed captures directly and yields the
engine's events for one pair, in receive order. Parsed once per pair per test session.

Gate.io spot v4 (captured 2021-04-22):

- ``GATEIO.0``: ``currency_pairs`` metadata; ``precision`` = price decimals, so the tick is 10^-precision.
- ``GATEIO.http.0.0``: ``<url> -> <recv s>: {"id", "asks", "bids"}``, REST ``order_book?...&with_id=true``,
  100 levels per side. No timestamp: ``ts_us`` is the receive time. Levels beyond the 100 are unknown
  until a diff touches them.
- ``GATEIO.ws.1.0``: ``<recv s>: <payload>``; ``spot.order_book_update`` (``result``: ``t`` ms, ``s``,
  ``U``/``u``, ``b``/``a`` absolute sizes, 0 = removed). Gate's sync rule is Binance spot's (drop
  ``u <= id``, the first diff straddles ``id + 1``, then ``U == previous u + 1``), so ``U``/``u`` go into
  ``BookDelta`` as they are. ``spot.trades``: ``id`` (venue-wide, increasing), ``create_time_ms``,
  ``side`` = taker side. Lines starting with ``wss://`` are what the client sent (ignored).

KuCoin (captured 2021-04-25):

- ``KUCOIN.0``: ``/api/v1/symbols``; ``priceIncrement`` is the tick; ``baseCurrency``/``quoteCurrency``
  give the unified symbol (``BCHSV-USDT`` is ``BSV/USDT``, as ccxt names it).
- ``KUCOIN.http.0.0``: REST ``api/v3/market/orderbook/level2`` (full depth) with ``sequence`` and ``time`` ms.
- ``KUCOIN.ws.1.0``: ``trade.l2update`` with ``sequenceStart``/``sequenceEnd`` and per-change
  ``[price, size, sequence]``; no timestamp, so ``ts_us`` is the receive time. KuCoin's rule: apply only the
  changes whose own sequence is above the snapshot's; a change with price ``"0"`` only moves the sequence.
  As a ``BookDelta``: ``U = sequenceStart``, ``u = sequenceEnd`` (so ``BookSync``'s spot rule checks the
  chain), with the changes at or below the snapshot's sequence left out of the one message that straddles
  it (``BookSync`` applies a straddling message whole). ``trade.l3match``: ``time`` ns, ``side`` = taker.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from helios_orderflow.core.events import NO_ID, BestBidOffer, BookDelta, BookSnapshot, Event, Levels, Trade
from helios_orderflow.core.settings import HeliosSettings
from helios_orderflow.engine.pair_engine import PairEngine

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cryptofeed"

#: The thin pairs the thin-market tests measure (venue symbol as in the captures).
GATE_PAIRS = ("INK_USDT", "HAI_ETH", "ZKS_ETH", "NANO_USDT", "FAST_USDT", "QTUM3S_USDT", "DIS_USDT", "NEO_BTC",
              "OMG_USDT", "BTC_USDC")
KUCOIN_PAIRS = ("BCHSV-USDT", "SNX-BTC", "ANKR-BTC")


@dataclass(frozen=True, slots=True)
class Market:
    exchange: str  # ccxt id
    venue_symbol: str
    symbol: str  # unified
    tick: float  # from the venue's metadata


def _us(seconds_text: str) -> int:
    """``1619093533.764683`` -> integer microseconds (digits beyond the sixth dropped)."""
    whole, _, frac = seconds_text.strip().partition(".")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


def _http_lines(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(url, receive µs, json) for each ``<url> -> <recv s>: <json>`` line."""
    with path.open() as f:
        for line in f:
            url, sep, rest = line.partition(" -> ")
            if not sep:
                continue
            ts_text, _, body = rest.partition(": ")
            yield url, _us(ts_text), json.loads(body)


def _ws_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(receive µs, json) for each received ``<recv s>: <payload>`` line (sent lines start with the URL)."""
    with path.open() as f:
        for line in f:
            if line.startswith("wss://"):
                continue
            ts_text, sep, body = line.partition(": ")
            if sep:
                yield _us(ts_text), json.loads(body)


def _levels(raw: list[list[str]]) -> Levels:
    return tuple((float(r[0]), float(r[1])) for r in raw)


@functools.cache
def gate_market(pair: str) -> Market:
    for _, _, data in _http_lines(DATA_DIR / "GATEIO.0"):
        for m in data:
            if m["id"] == pair:
                tick = float(Decimal(1).scaleb(-int(m["precision"])))
                return Market("gate", pair, f"{m['base']}/{m['quote']}", tick)
    raise KeyError(f"{pair} not in GATEIO.0")


@functools.cache
def kucoin_market(pair: str) -> Market:
    for _, _, data in _http_lines(DATA_DIR / "KUCOIN.0"):
        for m in data["data"]:
            if m["symbol"] == pair:
                sym = f"{m['baseCurrency']}/{m['quoteCurrency']}"
                return Market("kucoin", pair, sym, float(m["priceIncrement"]))
    raise KeyError(f"{pair} not in KUCOIN.0")


def market(pair: str) -> Market:
    return gate_market(pair) if "_" in pair else kucoin_market(pair)


@functools.cache
def gate_events(pair: str) -> tuple[Event, ...]:
    """The REST snapshot, order-book diffs and trades of one Gate pair, in receive order."""
    m = gate_market(pair)
    ex, sym = m.exchange, m.symbol
    out: list[tuple[int, int, Event]] = []
    ev: Event
    for url, recv, data in _http_lines(DATA_DIR / "GATEIO.http.0.0"):
        if f"currency_pair={pair}&" in url:
            ev = BookSnapshot(ex, sym, recv, recv, int(data["id"]), _levels(data["bids"]), _levels(data["asks"]))
            out.append((recv, len(out), ev))
    for recv, msg in _ws_lines(DATA_DIR / "GATEIO.ws.1.0"):
        if msg.get("event") != "update":
            continue
        r = msg["result"]
        channel = msg["channel"]
        if channel == "spot.order_book_update" and r["s"] == pair:
            ev = BookDelta(ex, sym, int(r["t"]) * 1000, recv, int(r["U"]), int(r["u"]), NO_ID,
                           _levels(r.get("b", [])), _levels(r.get("a", [])))
        elif channel == "spot.trades" and r["currency_pair"] == pair:
            ev = Trade(ex, sym, int(Decimal(r["create_time_ms"]) * 1000), recv, float(r["price"]),
                       float(r["amount"]), r["side"], str(r["id"]))
        else:
            continue
        out.append((recv, len(out), ev))
    out.sort(key=lambda x: (x[0], x[1]))
    return tuple(e for _, _, e in out)


@functools.cache
def kucoin_events(pair: str) -> tuple[Event, ...]:
    """The REST snapshot, level2 updates and trades of one KuCoin pair, in receive order."""
    m = kucoin_market(pair)
    ex, sym = m.exchange, m.symbol
    out: list[tuple[int, int, Event]] = []
    snap_seq = NO_ID
    ev: Event
    for url, recv, data in _http_lines(DATA_DIR / "KUCOIN.http.0.0"):
        if url.endswith(f"symbol={pair}"):
            d = data["data"]
            snap_seq = int(d["sequence"])
            ev = BookSnapshot(ex, sym, int(d["time"]) * 1000, recv, snap_seq, _levels(d["bids"]), _levels(d["asks"]))
            out.append((recv, len(out), ev))
    for recv, msg in _ws_lines(DATA_DIR / "KUCOIN.ws.1.0"):
        subject = msg.get("subject")
        d = msg.get("data") or {}
        if d.get("symbol") != pair:
            continue
        if subject == "trade.l2update":
            start, end = int(d["sequenceStart"]), int(d["sequenceEnd"])
            straddles = start <= snap_seq < end

            def keep(changes: list[list[str]], straddles: bool = straddles) -> Levels:
                return tuple(
                    (float(p), float(q)) for p, q, seq in changes
                    if p != "0" and not (straddles and int(seq) <= snap_seq)
                )

            c = d["changes"]
            ev = BookDelta(ex, sym, recv, recv, start, end, NO_ID, keep(c["bids"]), keep(c["asks"]))
        elif subject == "trade.l3match":
            ev = Trade(ex, sym, int(d["time"]) // 1000, recv, float(d["price"]), float(d["size"]), d["side"],
                       d["tradeId"])
        else:
            continue
        out.append((recv, len(out), ev))
    out.sort(key=lambda x: (x[0], x[1]))
    return tuple(e for _, _, e in out)


def events(pair: str) -> tuple[Event, ...]:
    return gate_events(pair) if "_" in pair else kucoin_events(pair)


@functools.cache
def capture_end_us(venue_file: str) -> int:
    """Receive time of the last message of a websocket capture (``GATEIO.ws.1.0``), µs."""
    last = -1
    for recv, _ in _ws_lines(DATA_DIR / venue_file):
        last = max(last, recv)
    return last


def end_of_capture(pair: str) -> Event:
    """An event that only moves the engine's clock to the end of the pair's capture (a ``BestBidOffer`` the
    engine counts and otherwise ignores, as ``_scenario.Feed.tick`` does): the book stood as it was until
    then, so every heatmap column and wall scan due within the capture is taken. Without it a pair whose
    book never changed after its snapshot (INK_USDT: one stale diff, no trade) would have no timer fire."""
    m = market(pair)
    end = capture_end_us("GATEIO.ws.1.0" if m.exchange == "gate" else "KUCOIN.ws.1.0")
    return BestBidOffer(m.exchange, m.symbol, end, end, NO_ID, math.nan, math.nan, math.nan, math.nan)


def replay(pair: str, settings: HeliosSettings | None = None) -> PairEngine:
    """A ``PairEngine`` (default settings unless given) fed the pair's capture to its end."""
    m = market(pair)
    engine = PairEngine(m.exchange, m.symbol, settings or HeliosSettings())
    for ev in events(pair):
        engine.on_event(ev)
    engine.on_event(end_of_capture(pair))
    return engine
